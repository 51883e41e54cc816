//! `#[derive(Mapped)]` through the `orm` facade: the generated metadata, column handles and
//! `Mapped` methods, and `from_row` on rows read from an in-memory SQLite database.

use orm::{Column, ColumnSet, CoreError, DecodeError, Engine, Mapped, Metadata, SqlType, Value};

/// Every field attribute, and a self-referencing foreign key.
#[derive(Mapped, Debug, PartialEq)]
#[mapped(table = "users")]
pub struct User {
    #[mapped(primary_key)]
    pub id: Option<i64>,
    pub name: String,
    #[mapped(column = "full_name")]
    pub fullname: Option<String>,
    pub age: i32,
    #[mapped(version)]
    pub version: i32,
    #[mapped(foreign_key = "users.id")]
    pub manager_id: Option<i64>,
}

/// A composite key declared on the struct, in an order other than the fields'.
#[derive(Mapped, Debug, PartialEq)]
#[mapped(table = "memberships", primary_key(user_id, group_id))]
pub struct Membership {
    pub group_id: i64,
    #[mapped(foreign_key = "users.id")]
    pub user_id: i64,
    pub(crate) role: String,
}

/// The crate path reached through a re-export.
mod reexport {
    pub use ::orm as inner;
}

/// Default table name, a key assigned by the application, the other column types, a raw
/// identifier, and an overridden crate path.
#[derive(Mapped, Debug, PartialEq)]
#[mapped(crate = "crate::reexport::inner")]
pub struct BlobStore {
    #[mapped(primary_key)]
    pub key: String,
    pub r#type: i16,
    pub size: f64,
    pub ratio: Option<f32>,
    pub public: bool,
    pub data: Vec<u8>,
}

fn ed() -> User {
    User {
        id: None,
        name: "ed".into(),
        fullname: Some("Ed Jones".into()),
        age: 30,
        version: 1,
        manager_id: None,
    }
}

#[test]
fn table_metadata() {
    let t = User::TABLE;
    assert_eq!(t.name, "users");
    let columns: Vec<_> = t
        .columns
        .iter()
        .map(|c| (c.name, c.field, c.sql_type, c.nullable, c.generated))
        .collect();
    assert_eq!(
        columns,
        [
            ("id", "id", SqlType::BigInt, false, true),
            ("name", "name", SqlType::Text, false, false),
            ("full_name", "fullname", SqlType::Text, true, false),
            ("age", "age", SqlType::Integer, false, false),
            ("version", "version", SqlType::Integer, false, false),
            ("manager_id", "manager_id", SqlType::BigInt, true, false),
        ]
    );
    assert_eq!(t.primary_key, &[0]);
    assert_eq!(t.version, Some(4));
    assert_eq!(t.generated_key(), Some(0));
    assert_eq!(t.foreign_keys.len(), 1);
    let fk = t.foreign_keys[0];
    assert_eq!(
        (fk.columns, fk.ref_table, fk.ref_columns),
        (&[5][..], "users", &["id"][..])
    );

    let t = Membership::TABLE;
    assert_eq!(t.name, "memberships");
    assert_eq!(t.primary_key, &[1, 0]);
    assert_eq!(t.version, None);
    assert_eq!(t.generated_key(), None);
    assert!(t.columns.iter().all(|c| !c.nullable && !c.generated));
    assert_eq!(t.foreign_keys[0].columns, &[1]);

    let t = BlobStore::TABLE;
    assert_eq!(t.name, "blob_store");
    let columns: Vec<_> = t
        .columns
        .iter()
        .map(|c| (c.name, c.sql_type, c.nullable))
        .collect();
    assert_eq!(
        columns,
        [
            ("key", SqlType::Text, false),
            ("type", SqlType::SmallInt, false),
            ("size", SqlType::Double, false),
            ("ratio", SqlType::Real, true),
            ("public", SqlType::Boolean, false),
            ("data", SqlType::Blob, false),
        ]
    );
    assert_eq!(t.generated_key(), None);
}

#[test]
fn column_handles() {
    let name: Column<User, String> = User::name;
    let fullname: Column<User, Option<String>> = User::fullname;
    assert_eq!((name.index(), fullname.index()), (1, 2));
    assert_eq!(fullname.def().name, "full_name");
    assert_eq!(format!("{:?}", User::manager_id), "users.manager_id");

    let mut u = ed();
    assert_eq!(User::name.get(&u), "ed");
    *User::age.get_mut(&mut u) = 31;
    assert_eq!(u.age, 31);

    let role: Column<Membership, String> = Membership::role;
    assert_eq!(role.index(), 2);
    let ty: Column<BlobStore, i16> = BlobStore::r#type;
    assert_eq!(ty.def().field, "type");
}

#[test]
fn generated_key_lifecycle() {
    let mut u = ed();
    assert_eq!(u.key(), None);
    u.set_generated_key(Value::I64(7)).unwrap();
    assert_eq!((u.id, u.key()), (Some(7), Some(7)));
    // SQLite returns every integer as a 64-bit value; narrower keys convert.
    u.set_generated_key(Value::I32(8)).unwrap();
    assert_eq!(u.key(), Some(8));
    let err = u.set_generated_key(Value::Text("x".into())).unwrap_err();
    assert!(
        matches!(&err, CoreError::Decode { table, column, .. } if table == "users" && column == "id"),
        "{err}"
    );
    u.clear_generated_key();
    assert_eq!(u.id, None);
}

#[test]
fn assigned_keys() {
    let mut m = Membership {
        group_id: 1,
        user_id: 2,
        role: "admin".into(),
    };
    assert_eq!(m.key(), Some((2, 1)));
    assert!(matches!(
        m.set_generated_key(Value::I64(3)),
        Err(CoreError::NoGeneratedKey { table }) if table == "memberships"
    ));
    m.clear_generated_key();
    assert_eq!(m.key(), Some((2, 1)));

    let b = BlobStore {
        key: "k".into(),
        r#type: 1,
        size: 2.5,
        ratio: None,
        public: true,
        data: vec![1, 2],
    };
    assert_eq!(b.key(), Some("k".to_owned()));
}

#[test]
fn column_values() {
    let u = ed();
    let values: Vec<Value> = (0..7).map(|i| u.column_value(i)).collect();
    assert_eq!(
        values,
        [
            Value::Null,
            Value::Text("ed".into()),
            Value::Text("Ed Jones".into()),
            Value::I32(30),
            Value::I32(1),
            Value::Null,
            // Out of range.
            Value::Null,
        ]
    );
}

#[test]
fn changed_columns_and_clone_row() {
    let before = ed();
    let mut after = before.clone_row();
    assert_eq!(after, before);
    assert!(after.changed_columns(&before).is_empty());

    after.name = "eddie".into();
    after.fullname = None;
    after.version += 1;
    let changed = after.changed_columns(&before);
    assert_eq!(changed.iter().collect::<Vec<_>>(), [1, 2, 4]);
    let mut expected = ColumnSet::default();
    for i in [1, 2, 4] {
        expected.insert(i);
    }
    assert_eq!(changed, expected);
}

const SELECT_USERS: &str =
    "SELECT id, name, full_name, age, version, manager_id FROM users ORDER BY id";

fn engine() -> Result<Engine, CoreError> {
    let engine = Engine::connect("sqlite::memory:")?;
    Metadata::of::<(User, Membership, BlobStore)>().create_all(&engine)?;
    let conn = engine.connection()?;
    // `id` is left out: the database generates it.
    let insert = "INSERT INTO users (name, full_name, age, version, manager_id) \
                  VALUES (?1, ?2, ?3, ?4, ?5)";
    conn.execute(
        insert,
        &[
            "ed".into(),
            Value::Null,
            30i32.into(),
            1i32.into(),
            Value::Null,
        ],
    )?;
    conn.execute(
        insert,
        &[
            "wendy".into(),
            "Wendy W".into(),
            25i32.into(),
            3i32.into(),
            1i64.into(),
        ],
    )?;
    Ok(engine)
}

#[test]
fn from_row_reads_every_field() -> Result<(), CoreError> {
    let engine = engine()?;
    let conn = engine.connection()?;
    let mut users = Vec::new();
    conn.query(SELECT_USERS, &[], |row| {
        users.push(User::from_row(row, 0)?);
        Ok(())
    })?;
    assert_eq!(
        users,
        [
            User {
                id: Some(1),
                fullname: None,
                ..ed()
            },
            User {
                id: Some(2),
                name: "wendy".into(),
                fullname: Some("Wendy W".into()),
                age: 25,
                version: 3,
                manager_id: Some(1),
            },
        ]
    );
    Ok(())
}

#[test]
fn from_row_and_key_from_row_at_an_offset() -> Result<(), CoreError> {
    let engine = engine()?;
    let conn = engine.connection()?;
    conn.execute(
        "INSERT INTO memberships (group_id, user_id, role) VALUES (?1, ?2, ?3)",
        &[10i64.into(), 2i64.into(), "owner".into()],
    )?;
    // A joined row: the user's columns, then the membership's.
    let sql = "SELECT u.id, u.name, u.full_name, u.age, u.version, u.manager_id, \
               m.group_id, m.user_id, m.role \
               FROM users u JOIN memberships m ON m.user_id = u.id";
    let mut seen = Vec::new();
    conn.query(sql, &[], |row| {
        let user = User::from_row(row, 0)?;
        let membership = Membership::from_row(row, 6)?;
        seen.push((
            user.name,
            User::key_from_row(row, 0)?,
            membership,
            Membership::key_from_row(row, 6)?,
        ));
        Ok(())
    })?;
    assert_eq!(
        seen,
        [(
            "wendy".to_owned(),
            2,
            Membership {
                group_id: 10,
                user_id: 2,
                role: "owner".into()
            },
            (2, 10),
        )]
    );
    Ok(())
}

#[test]
fn null_in_a_non_option_field_names_the_column() -> Result<(), CoreError> {
    let engine = engine()?;
    let conn = engine.connection()?;
    let mut result = None;
    conn.query(
        "SELECT id, NULL, full_name, age, version, manager_id FROM users",
        &[],
        |row| {
            result = Some(User::from_row(row, 0));
            Ok(())
        },
    )?;
    let err = result.expect("a row").unwrap_err();
    match &err {
        CoreError::Decode {
            table,
            column,
            source,
        } => {
            assert_eq!((table.as_str(), column.as_str()), ("users", "name"));
            assert_eq!(*source, DecodeError::UnexpectedNull);
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "cannot read column `users.name`: NULL read into a non-Option field"
    );
    Ok(())
}

#[test]
fn other_column_types_round_trip() -> Result<(), CoreError> {
    let engine = engine()?;
    let conn = engine.connection()?;
    let b = BlobStore {
        key: "k".into(),
        r#type: 3,
        size: 2.5,
        ratio: Some(0.5),
        public: true,
        data: vec![0, 255],
    };
    let values: Vec<Value> = (0..6).map(|i| b.column_value(i)).collect();
    conn.execute(
        r#"INSERT INTO blob_store (key, "type", size, ratio, public, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"#,
        &values,
    )?;
    let mut read = None;
    conn.query(
        r#"SELECT key, "type", size, ratio, public, data FROM blob_store"#,
        &[],
        |row| {
            read = Some(BlobStore::from_row(row, 0)?);
            Ok(())
        },
    )?;
    assert_eq!(read, Some(b));
    Ok(())
}

#[test]
fn set_column_writes_one_field_with_its_type_checked() {
    let mut u = ed();
    u.set_column(3, Value::I32(41)).unwrap();
    u.set_column(2, Value::Null).unwrap();
    u.set_column(4, Value::I64(7)).unwrap(); // integers convert to the field's width
    assert_eq!((u.age, u.fullname.clone(), u.version), (41, None, 7));
    match u.set_column(1, Value::I64(1)) {
        Err(CoreError::Decode { table, column, .. }) => {
            assert_eq!((table.as_str(), column.as_str()), ("users", "name"))
        }
        other => panic!("expected a decode error naming users.name, got {other:?}"),
    }
    assert!(matches!(
        u.set_column(3, Value::Null),
        Err(CoreError::Decode {
            source: DecodeError::UnexpectedNull,
            ..
        })
    ));
    u.set_column(99, Value::I32(0)).unwrap();
}
