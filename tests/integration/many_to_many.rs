//! Many-to-many relationships through an association table: the rows a flush writes (and in
//! which order), both sides kept in step, lazy and `selectin` loading, a self-referential
//! association, and the errors. Every test runs on both databases.

use orm::prelude::*;
use orm::Error;

use crate::support::{capture, count_rows, for_each_db, query_i64, shape, TestDb};

#[derive(Mapped, Debug)]
#[mapped(table = "articles")]
pub struct Article {
    #[mapped(primary_key)]
    pub id: Option<i64>,
    pub title: String,
    #[mapped(relationship(secondary = ArticleTag, back_populates = "articles"))]
    pub tags: Collection<Tag>,
}

#[derive(Mapped, Debug)]
#[mapped(table = "tags")]
pub struct Tag {
    #[mapped(primary_key)]
    pub id: Option<i64>,
    pub name: String,
    #[mapped(relationship(secondary = ArticleTag, back_populates = "tags"))]
    pub articles: Collection<Article>,
}

/// The association table: its rows are written by the relationships, never as objects.
#[derive(Mapped, Debug)]
#[mapped(table = "article_tags", primary_key(article_id, tag_id))]
pub struct ArticleTag {
    #[mapped(foreign_key = "articles.id")]
    pub article_id: i64,
    #[mapped(foreign_key = "tags.id")]
    pub tag_id: i64,
}

/// Members following members: one table on both sides, told apart with `via`. Following
/// someone does not add them to the session (no save-update cascade).
#[derive(Mapped, Debug)]
#[mapped(table = "members")]
pub struct Member {
    #[mapped(primary_key)]
    pub id: Option<i64>,
    pub name: String,
    #[mapped(relationship(
        secondary = Follow,
        via = "follower_id",
        back_populates = "followers",
        cascade = "merge"
    ))]
    pub follows: Collection<Member>,
    #[mapped(relationship(secondary = Follow, via = "followed_id", back_populates = "follows"))]
    pub followers: Collection<Member>,
}

#[derive(Mapped, Debug)]
#[mapped(table = "follows", primary_key(follower_id, followed_id))]
pub struct Follow {
    #[mapped(foreign_key = "members.id")]
    pub follower_id: i64,
    #[mapped(foreign_key = "members.id")]
    pub followed_id: i64,
}

/// A playlist whose songs go with it (delete cascade on a many-to-many relationship).
#[derive(Mapped, Debug)]
#[mapped(table = "playlists")]
pub struct Playlist {
    #[mapped(primary_key)]
    pub id: Option<i64>,
    pub name: String,
    #[mapped(relationship(secondary = PlaylistSong, cascade = "all"))]
    pub songs: Collection<Song>,
}

#[derive(Mapped, Debug)]
#[mapped(table = "songs")]
pub struct Song {
    #[mapped(primary_key)]
    pub id: Option<i64>,
    pub title: String,
}

#[derive(Mapped, Debug)]
#[mapped(table = "playlist_songs", primary_key(playlist_id, song_id))]
pub struct PlaylistSong {
    #[mapped(foreign_key = "playlists.id")]
    pub playlist_id: i64,
    #[mapped(foreign_key = "songs.id")]
    pub song_id: i64,
}

fn article(title: &str, tags: Vec<Obj<Tag>>) -> Article {
    Article {
        id: None,
        title: title.into(),
        tags: tags.into_iter().collect(),
    }
}

fn tag(name: &str) -> Obj<Tag> {
    Obj::new(Tag {
        id: None,
        name: name.into(),
        articles: Collection::new(),
    })
}

fn member(name: &str) -> Member {
    Member {
        id: None,
        name: name.into(),
        follows: Collection::new(),
        followers: Collection::new(),
    }
}

fn factory(db: &TestDb) -> SessionMaker {
    Metadata::of::<(Article, Tag, ArticleTag, Member, Follow)>()
        .create_all(&db.engine())
        .expect("create_all");
    Metadata::of::<(Playlist, Song, PlaylistSong)>()
        .create_all(&db.engine())
        .expect("create_all");
    sessionmaker().bind(db.engine()).build()
}

fn names(tags: &[Obj<Tag>]) -> Vec<String> {
    let mut out: Vec<String> = tags
        .iter()
        .map(|t| t.read().unwrap().name.clone())
        .collect();
    out.sort();
    out
}

/// The (article, tag) pairs of the association table, by names.
fn pairs(db: &TestDb) -> Vec<(String, String)> {
    let conn = db.engine().connection().unwrap();
    let rows = crate::support::query_values(
        &conn,
        "SELECT a.title, t.name FROM article_tags x JOIN articles a ON a.id = x.article_id \
         JOIN tags t ON t.id = x.tag_id ORDER BY a.title, t.name",
        &[],
    )
    .unwrap();
    rows.into_iter()
        .map(|r| (text(&r[0]), text(&r[1])))
        .collect()
}

fn text(v: &orm::Value) -> String {
    match v {
        orm::Value::Text(s) => s.clone(),
        other => panic!("not text: {other:?}"),
    }
}

#[test]
fn a_new_graph_inserts_both_sides_then_the_association_rows() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let (rust, orm) = (tag("rust"), tag("orm"));
        let a = s.add(article("intro", vec![rust.clone(), orm.clone()]))?;
        s.add(article("deep dive", vec![rust.clone()]))?;
        // Both sides in step in memory, before any SQL.
        assert_eq!(rust.related(Tag::articles)?.len(), 2);
        assert!(orm.related(Tag::articles)?[0].ptr_eq(&a));
        assert_eq!(rust.state(), ObjectState::Pending, "save-update cascade");
        let ((), sql) = capture(|| s.commit().expect("commit"));
        let verbs = shape(&sql);
        assert_eq!(verbs.len(), 3, "{sql:?}");
        assert!(
            verbs[..2].contains(&"INSERT articles".to_owned()),
            "{sql:?}"
        );
        assert!(verbs[..2].contains(&"INSERT tags".to_owned()), "{sql:?}");
        assert_eq!(
            verbs[2], "INSERT article_tags",
            "one INSERT for 3 rows: {sql:?}"
        );
        assert_eq!(
            pairs(db),
            [("deep dive", "rust"), ("intro", "orm"), ("intro", "rust")]
                .map(|(a, t)| (a.to_owned(), t.to_owned()))
        );
        s.close()?;

        // A new session loads either side lazily: one SELECT joining the association table.
        let mut s = f.session();
        let rust = s.query::<Tag>().filter(Tag::name.eq("rust")).one()?;
        let (articles, sql) = capture(|| rust.related(Tag::articles).expect("load"));
        assert_eq!(shape(&sql), ["SELECT articles"], "{sql:?}");
        assert!(sql[0].contains("JOIN"), "{sql:?}");
        assert_eq!(articles.len(), 2);
        let intro = articles
            .iter()
            .find(|a| a.read().unwrap().title == "intro")
            .expect("intro");
        let tags = intro.related(Article::tags)?;
        assert_eq!(names(&tags), ["orm", "rust"]);
        assert!(
            tags.iter().any(|t| t.ptr_eq(&rust)),
            "loaded objects go through the identity map"
        );
        Ok(())
    })
}

#[test]
fn append_and_remove_write_one_delete_then_one_insert_and_keep_both_sides_in_step() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let (rust, orm, sql_tag) = (tag("rust"), tag("orm"), tag("sql"));
        let a = s.add(article("intro", vec![rust.clone(), orm.clone()]))?;
        s.add(sql_tag.clone())?;
        s.commit()?;

        let orm_articles = orm.related(Tag::articles)?;
        assert_eq!(orm_articles.len(), 1);
        assert!(sql_tag.related(Tag::articles)?.is_empty());
        assert!(a.remove(Article::tags, &orm)?);
        a.append(Article::tags, &sql_tag)?;
        // The other side's loaded collections follow.
        assert!(orm.related(Tag::articles)?.is_empty());
        assert!(sql_tag.related(Tag::articles)?[0].ptr_eq(&a));
        // Appending twice changes nothing.
        a.append(Article::tags, &sql_tag)?;
        let ((), sql) = capture(|| s.flush().expect("flush"));
        assert_eq!(
            shape(&sql),
            ["DELETE article_tags", "INSERT article_tags"],
            "{sql:?}"
        );
        s.commit()?;
        assert_eq!(
            pairs(db),
            [("intro", "rust"), ("intro", "sql")].map(|(a, t)| (a.to_owned(), t.to_owned()))
        );
        assert_eq!(
            count_rows(&db.engine(), "tags")?,
            3,
            "removing a tag keeps it"
        );

        // Changes that cancel out before a flush write nothing.
        a.append(Article::tags, &orm)?;
        a.remove(Article::tags, &orm)?;
        a.remove(Article::tags, &rust)?;
        a.append(Article::tags, &rust)?;
        let ((), sql) = capture(|| s.flush().expect("flush"));
        assert!(shape(&sql).is_empty(), "{sql:?}");
        // So do both sides of one row: the row is written once.
        orm.append(Tag::articles, &a)?;
        assert!(a.related(Article::tags)?.iter().any(|t| t.ptr_eq(&orm)));
        a.append(Article::tags, &orm)?;
        let ((), sql) = capture(|| s.commit().expect("commit"));
        assert_eq!(shape(&sql), ["INSERT article_tags"], "{sql:?}");
        assert_eq!(pairs(db).len(), 3);
        Ok(())
    })
}

#[test]
fn deleting_an_object_deletes_its_association_rows_first() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let rust = tag("rust");
        s.add(article("intro", vec![rust.clone(), tag("orm")]))?;
        s.add(article("deep dive", vec![rust.clone()]))?;
        s.commit()?;
        s.close()?;

        // Nothing loaded: the rows go by the deleted object's key, without a SELECT.
        let mut s = f.session();
        let intro = s
            .query::<Article>()
            .filter(Article::title.eq("intro"))
            .one()?;
        s.delete(&intro)?;
        let ((), sql) = capture(|| s.commit().expect("commit"));
        assert_eq!(
            shape(&sql),
            ["DELETE article_tags", "DELETE articles"],
            "{sql:?}"
        );
        assert_eq!(pairs(db), [("deep dive".to_owned(), "rust".to_owned())]);
        assert_eq!(count_rows(&db.engine(), "tags")?, 2, "no delete cascade");

        // From the other side, with a removal in the same flush: both rows go.
        let rust = s.query::<Tag>().filter(Tag::name.eq("rust")).one()?;
        let deep = rust.related(Tag::articles)?.pop().expect("deep dive");
        deep.remove(Article::tags, &rust)?;
        s.delete(&rust)?;
        s.commit()?;
        assert!(pairs(db).is_empty());
        assert_eq!(count_rows(&db.engine(), "tags")?, 1);
        Ok(())
    })
}

#[test]
fn selectin_loads_a_many_to_many_collection_of_every_parent_in_one_select() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let tags: Vec<Obj<Tag>> = (0..5).map(|i| tag(&format!("t{i}"))).collect();
        for i in 0..100 {
            let mine = vec![tags[i % 5].clone(), tags[(i + 1) % 5].clone()];
            s.add(article(&format!("a{i:03}"), mine))?;
        }
        s.commit()?;
        s.close()?;

        let mut s = f.session();
        let (articles, sql) = capture(|| {
            s.query::<Article>()
                .options(selectin(Article::tags))
                .all()
                .expect("query")
        });
        assert_eq!(shape(&sql), ["SELECT articles", "SELECT tags"], "{sql:?}");
        assert_eq!(articles.len(), 100);
        let ((), sql) = capture(|| {
            for a in &articles {
                assert_eq!(a.related(Article::tags).expect("loaded").len(), 2);
            }
        });
        assert!(sql.is_empty(), "no lazy load after selectin: {sql:?}");
        // Five tag objects in all: the identity map holds one per row.
        let t0: Vec<Obj<Tag>> = articles
            .iter()
            .flat_map(|a| a.related(Article::tags).unwrap())
            .filter(|t| t.read().unwrap().name == "t0")
            .collect();
        assert_eq!(t0.len(), 40);
        assert!(t0.iter().all(|t| t.ptr_eq(&t0[0])));
        Ok(())
    })
}

#[test]
fn a_self_referential_association_keeps_its_direction() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let ann = s.add(member("ann"))?;
        let bob = s.add(member("bob"))?;
        let cid = s.add(member("cid"))?;
        ann.append(Member::follows, &bob)?;
        ann.append(Member::follows, &cid)?;
        bob.append(Member::follows, &cid)?;
        assert_eq!(cid.related(Member::followers)?.len(), 2);
        assert!(ann.related(Member::followers)?.is_empty());
        s.commit()?;
        let conn = db.engine().connection()?;
        let followers_of = |name: &str| -> i64 {
            let sql = format!(
                "SELECT count(*) FROM follows f JOIN members m ON m.id = f.followed_id \
                 WHERE m.name = {}",
                db.param(1)
            );
            query_i64(&conn, &sql, &[name.into()]).unwrap()
        };
        assert_eq!(followers_of("cid"), 2);
        assert_eq!(followers_of("bob"), 1);
        assert_eq!(followers_of("ann"), 0);
        s.close()?;

        let mut s = f.session();
        let cid = s.query::<Member>().filter(Member::name.eq("cid")).one()?;
        let mut followers: Vec<String> = cid
            .related(Member::followers)?
            .iter()
            .map(|m| m.read().unwrap().name.clone())
            .collect();
        followers.sort();
        assert_eq!(followers, ["ann", "bob"]);
        assert!(cid.related(Member::follows)?.is_empty());
        Ok(())
    })
}

#[test]
fn changes_that_cannot_be_saved_are_clear_errors() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let ann = s.add(member("ann"))?;
        s.commit()?;

        // Following a member that is in no session (no save-update cascade): the flush names
        // the relationship and the association table, and writes nothing.
        ann.append(Member::follows, member("dan"))?;
        let err = s.commit().expect_err("dan has no row");
        assert!(
            matches!(
                &err,
                Error::UnsavedRelated { relationship, table: "members", secondary: "follows" }
                    if relationship == "members.follows"
            ),
            "{err:?}"
        );
        s.rollback()?;
        assert_eq!(count_rows(&db.engine(), "follows")?, 0);
        assert_eq!(count_rows(&db.engine(), "members")?, 1);

        // A detached object's collection: the change would be lost, so it is refused.
        let ann = s.query::<Member>().one()?;
        ann.related(Member::follows)?;
        s.expunge(&ann)?;
        let err = ann
            .append(Member::follows, member("eve"))
            .expect_err("detached");
        assert!(
            matches!(&err, Error::DetachedCollection { relationship } if relationship == "members.follows"),
            "{err:?}"
        );
        assert!(
            ann.read()?.follows.loaded().unwrap().is_empty(),
            "nothing changed"
        );
        Ok(())
    })
}

#[test]
fn joined_loads_a_many_to_many_collection_through_the_association_table() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let (rust, orm) = (tag("rust"), tag("orm"));
        s.add(article("intro", vec![rust.clone(), orm.clone()]))?;
        s.add(article("deep dive", vec![rust.clone()]))?;
        s.add(article("untagged", vec![]))?;
        s.commit()?;
        s.close()?;

        let mut s = f.session();
        let (articles, sql) = capture(|| {
            s.query::<Article>()
                .options(joined(Article::tags))
                .order_by(Article::title)
                .all()
                .expect("query")
        });
        assert_eq!(shape(&sql), ["SELECT articles"], "{sql:?}");
        assert_eq!(articles.len(), 3);
        let (tags, sql) = capture(|| {
            articles
                .iter()
                .map(|a| names(&a.related(Article::tags).unwrap()))
                .collect::<Vec<_>>()
        });
        assert!(shape(&sql).is_empty(), "{sql:?}");
        assert_eq!(
            tags,
            [
                vec!["rust".to_owned()],
                vec!["orm".to_owned(), "rust".to_owned()],
                vec![]
            ]
        );
        Ok(())
    })
}

#[test]
fn merge_writes_the_association_rows_a_merged_collection_adds_and_removes() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let (rust, orm, sql_tag) = (tag("rust"), tag("orm"), tag("sql"));
        let a = s.add(article("intro", vec![rust.clone(), orm.clone()]))?;
        s.add(sql_tag.clone())?;
        s.commit()?;
        let id = a.read()?.id;
        s.close()?;

        // The article as a client sent it back: its key, and the tags it has now.
        let mut s = f.session();
        let tags: Vec<Obj<Tag>> = s.query::<Tag>().order_by(Tag::name).all()?;
        let by_name = |n: &str| {
            tags.iter()
                .find(|t| t.read().unwrap().name == n)
                .cloned()
                .unwrap()
        };
        let sent = Obj::new(Article {
            id,
            title: "intro".into(),
            tags: [by_name("rust"), by_name("sql")].into_iter().collect(),
        });
        let copy = s.merge(&sent)?;
        assert_eq!(names(&copy.related(Article::tags)?), ["rust", "sql"]);
        let ((), sql) = capture(|| s.commit().expect("commit"));
        assert_eq!(
            shape(&sql),
            ["DELETE article_tags", "INSERT article_tags"],
            "{sql:?}"
        );
        assert_eq!(
            pairs(db),
            [("intro", "rust"), ("intro", "sql")].map(|(a, t)| (a.to_owned(), t.to_owned()))
        );
        Ok(())
    })
}

#[test]
fn a_delete_cascade_deletes_the_related_objects_after_their_association_rows() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let songs = ["a", "b"].map(|t| Song {
            id: None,
            title: t.into(),
        });
        s.add(Playlist {
            id: None,
            name: "mix".into(),
            songs: songs.into_iter().collect(),
        })?;
        s.commit()?;
        s.close()?;

        let mut s = f.session();
        let mix = s.query::<Playlist>().one()?;
        s.delete(&mix)?;
        let ((), sql) = capture(|| s.commit().expect("commit"));
        let verbs = shape(&sql);
        assert_eq!(
            verbs[0], "SELECT songs",
            "the unloaded songs are loaded: {sql:?}"
        );
        assert_eq!(verbs[1], "DELETE playlist_songs", "{sql:?}");
        assert_eq!(verbs.len(), 4, "{sql:?}");
        assert!(verbs[2..].contains(&"DELETE songs".to_owned()), "{sql:?}");
        assert!(
            verbs[2..].contains(&"DELETE playlists".to_owned()),
            "{sql:?}"
        );
        for table in ["playlists", "songs", "playlist_songs"] {
            assert_eq!(count_rows(&db.engine(), table)?, 0, "{table}");
        }
        Ok(())
    })
}

#[test]
fn closing_the_session_unloads_many_to_many_collections() {
    for_each_db(|db| {
        factory(db);
        let f = sessionmaker()
            .bind(db.engine())
            .expire_on_commit(false)
            .build();
        let mut s = f.session();
        let rust = tag("rust");
        let a = s.add(article("intro", vec![rust.clone()]))?;
        s.commit()?;
        assert!(a.read()?.tags.is_loaded());
        assert!(rust.read()?.articles.is_loaded());
        // Both sides hold each other; closing lets go of both collections.
        s.close()?;
        assert!(!a.read()?.tags.is_loaded());
        assert!(!rust.read()?.articles.is_loaded());
        assert!(matches!(
            a.related(Article::tags),
            Err(Error::DetachedInstance { table: "articles" })
        ));
        Ok(())
    })
}
