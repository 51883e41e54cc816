//! Stage 2: the struct as the rest of the derive sees it.
//!
//! Built from the syntax tree and the parsed attributes; `check` validates it and `expand`
//! generates code from it alone.

use proc_macro2::Span;
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::{
    Data, DeriveInput, Fields, GenericArgument, Ident, LitStr, PathArguments, Type, Visibility,
};

use crate::attr::{self, Cascade, ForeignKeyRef};
use crate::Errors;

/// A struct deriving `Mapped`.
pub(crate) struct Model {
    /// The struct's name.
    pub ident: Ident,
    /// The table name.
    pub table: String,
    /// The path of the `orm` crate in generated code.
    pub crate_path: syn::Path,
    /// The fields, in declaration order: field `i` maps column `i`.
    pub fields: Vec<Field>,
    /// A primary key declared on the struct with `primary_key(a, b)`.
    pub struct_key: Option<StructKey>,
    /// The relationship fields, in declaration order (they are not columns).
    pub relations: Vec<Relation>,
}

/// A relationship field: `Collection<T>` (one-to-many, or many-to-many with `secondary`) or
/// `Reference<T>` (many-to-one).
pub(crate) struct Relation {
    /// The field name.
    pub ident: Ident,
    /// The field's visibility, given to its relationship constant.
    pub vis: Visibility,
    /// The field's type.
    pub ty: Type,
    /// One-to-many, many-to-one or many-to-many.
    pub kind: RelationKind,
    /// The association table's struct (many-to-many), or a `secondary` given to a
    /// `Reference<T>` (an error).
    pub secondary: Option<Type>,
    /// The related struct.
    pub target: Type,
    /// The field of the related struct that mirrors this one.
    pub back_populates: Option<Ident>,
    /// The cascades.
    pub cascade: Cascade,
    /// The foreign-key column, when named.
    pub via: Option<String>,
    /// The `relationship` key, for errors.
    pub span: Span,
    /// Column keys (`primary_key`, `column`, ...) given on the field, which a relationship
    /// cannot take.
    pub column_keys: Vec<Span>,
}

/// The direction of a relationship.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum RelationKind {
    /// `Collection<T>`: rows of `T` reference this row.
    OneToMany,
    /// `Reference<T>`: this row references a row of `T`.
    ManyToOne,
    /// `Collection<T>` with `secondary`: rows of an association table link this row and rows
    /// of `T`.
    ManyToMany,
}

/// A primary key declared on the struct.
pub(crate) struct StructKey {
    /// The `primary_key` key of the attribute.
    pub span: Span,
    /// Positions of the key's fields, in key order.
    pub fields: Vec<usize>,
}

/// One field, mapped to one column.
pub(crate) struct Field {
    /// The field name.
    pub ident: Ident,
    /// The field's visibility, given to its column constant.
    pub vis: Visibility,
    /// The field's type.
    pub ty: Type,
    /// The column name.
    pub column: String,
    /// Where the column name comes from: the `column = "..."` literal, or the field name.
    pub column_span: Span,
    /// A field-level `primary_key`, with its span.
    pub primary_key: Option<Span>,
    /// A `version` flag, with its span.
    pub version: Option<Span>,
    /// A `foreign_key = "table.column"`.
    pub foreign_key: Option<ForeignKeyRef>,
}

impl Model {
    /// Builds the model, recording every error found. `None` when the input is not a struct
    /// with named fields (an error is recorded then).
    pub(crate) fn from_input(input: &DeriveInput, errors: &mut Errors) -> Option<Model> {
        let attrs = attr::struct_attrs(&input.attrs, errors);
        if !input.generics.params.is_empty() {
            errors.spanned(
                &input.generics,
                "`Mapped` cannot be derived for a generic struct: a mapped struct is one table",
            );
        }
        let named = match &input.data {
            Data::Struct(data) => match &data.fields {
                Fields::Named(named) => Some(named),
                Fields::Unnamed(fields) => {
                    errors.spanned(
                        fields,
                        "`Mapped` needs named fields, one per column: use `struct Name { field: Type }`",
                    );
                    None
                }
                Fields::Unit => {
                    errors.spanned(
                        &input.ident,
                        "`Mapped` needs named fields, one per column: use `struct Name { field: Type }`",
                    );
                    None
                }
            },
            Data::Enum(data) => {
                errors.spanned(
                    data.enum_token,
                    "`Mapped` can only be derived for a struct with named fields",
                );
                None
            }
            Data::Union(data) => {
                errors.spanned(
                    data.union_token,
                    "`Mapped` can only be derived for a struct with named fields",
                );
                None
            }
        }?;

        let mut relations = Vec::new();
        let fields: Vec<Field> = named
            .named
            .iter()
            .filter_map(|f| {
                let ident = f.ident.clone().expect("named fields have names");
                let mut field_attrs = attr::field_attrs(&f.attrs, errors);
                if let Some(rel) = field_attrs.relationship.take() {
                    relations.push(Relation::new(f, ident, rel, &field_attrs, errors)?);
                    return None;
                }
                let (column, column_span) = match &field_attrs.column {
                    Some(lit) => (lit.value(), lit.span()),
                    None => (ident.unraw().to_string(), ident.span()),
                };
                Some(Field {
                    vis: f.vis.clone(),
                    ty: f.ty.clone(),
                    column,
                    column_span,
                    primary_key: field_attrs.primary_key,
                    version: field_attrs.version,
                    foreign_key: field_attrs.foreign_key,
                    ident,
                })
            })
            .collect();

        let struct_key = attrs.primary_key.map(|list| {
            let mut positions = Vec::with_capacity(list.fields.len());
            for name in &list.fields {
                let name_str = name.unraw().to_string();
                match fields.iter().position(|f| f.ident.unraw() == name_str) {
                    Some(i) if positions.contains(&i) => {
                        errors.spanned(
                            name,
                            format!("`{name_str}` is listed twice in `primary_key(...)`"),
                        );
                    }
                    Some(i) => positions.push(i),
                    None => errors.spanned(
                        name,
                        format!(
                            "`primary_key(...)` names `{name_str}`, which is not a field of `{}`",
                            input.ident
                        ),
                    ),
                }
            }
            StructKey {
                span: list.span,
                fields: positions,
            }
        });

        Some(Model {
            table: attrs.table.map_or_else(
                || snake_case(&input.ident.unraw().to_string()),
                |t| t.value(),
            ),
            crate_path: attrs.crate_path.unwrap_or_else(|| syn::parse_quote!(::orm)),
            ident: input.ident.clone(),
            fields,
            struct_key,
            relations,
        })
    }

    /// Positions of the primary-key fields, in key order.
    pub(crate) fn key_fields(&self) -> Vec<usize> {
        match &self.struct_key {
            Some(key) => key.fields.clone(),
            None => (0..self.fields.len())
                .filter(|&i| self.fields[i].primary_key.is_some())
                .collect(),
        }
    }

    /// The database-generated key: a single-column key of type `Option<T>`, as its position
    /// and `T`.
    pub(crate) fn generated_key(&self) -> Option<(usize, &Type)> {
        match self.key_fields()[..] {
            [i] => option_inner(&self.fields[i].ty).map(|inner| (i, inner)),
            _ => None,
        }
    }

    /// Position of the version column.
    pub(crate) fn version(&self) -> Option<usize> {
        self.fields.iter().position(|f| f.version.is_some())
    }
}

impl Relation {
    /// The relationship on field `f`; `None` (an error recorded) when its type is neither
    /// `Collection<T>` nor `Reference<T>`.
    fn new(
        f: &syn::Field,
        ident: Ident,
        rel: attr::RelationshipAttr,
        attrs: &attr::FieldAttrs,
        errors: &mut Errors,
    ) -> Option<Relation> {
        let kind_and_target = [
            ("Collection", RelationKind::OneToMany),
            ("Reference", RelationKind::ManyToOne),
        ]
        .into_iter()
        .find_map(|(name, kind)| generic_arg(&f.ty, name).map(|t| (kind, t.clone())));
        let Some((kind, target)) = kind_and_target else {
            errors.spanned(
                &f.ty,
                format!(
                    "a relationship field must be `Collection<T>` (one-to-many) or \
                     `Reference<T>` (many-to-one), not `{}`",
                    type_name(&f.ty)
                ),
            );
            return None;
        };
        let column_keys = [attrs.primary_key, attrs.version]
            .into_iter()
            .flatten()
            .chain(attrs.column.as_ref().map(LitStr::span))
            .collect();
        let kind = match (kind, &rel.secondary) {
            (RelationKind::OneToMany, Some(_)) => RelationKind::ManyToMany,
            (kind, _) => kind,
        };
        Some(Relation {
            vis: f.vis.clone(),
            ty: f.ty.clone(),
            kind,
            secondary: rel.secondary,
            target,
            back_populates: rel
                .back_populates
                .map(|lit| Ident::new(&lit.value(), lit.span())),
            cascade: rel.cascade.unwrap_or_default(),
            via: rel.via.map(|lit| lit.value()),
            span: rel.span.unwrap_or_else(|| ident.span()),
            column_keys,
            ident,
        })
    }
}

/// `T` when `ty` is written `Name<T>` (by the last segment of its path).
fn generic_arg<'a>(ty: &'a Type, name: &str) -> Option<&'a Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.iter().collect::<Vec<_>>()[..] {
        [GenericArgument::Type(inner)] => Some(inner),
        _ => None,
    }
}

/// `T` when `ty` is written `Option<T>` (by the last segment of its path: `Option`,
/// `std::option::Option` and `core::option::Option` alike).
pub(crate) fn option_inner(ty: &Type) -> Option<&Type> {
    match ty {
        Type::Path(path) if path.qself.is_none() => generic_arg(ty, "Option"),
        _ => None,
    }
}

/// Whether `ty` is written as one of the integer types a database can generate or increment.
pub(crate) fn is_integer(ty: &Type) -> bool {
    let Type::Path(path) = ty else { return false };
    path.qself.is_none()
        && path.path.segments.last().is_some_and(|last| {
            last.arguments.is_none() && ["i16", "i32", "i64"].iter().any(|t| last.ident == t)
        })
}

/// A type as the user would write it, for messages: `Option<String>`.
pub(crate) fn type_name(ty: &Type) -> String {
    let raw = ty.to_token_stream().to_string();
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        let next = chars.peek().copied();
        // Token streams print with spaces between all tokens; keep only those after commas
        // and between words.
        if c == ' ' {
            let prev = out.chars().last();
            let word =
                |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '\'');
            if prev == Some(',') || (word(prev) && word(next)) {
                out.push(' ');
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// `UserAccount` -> `user_account`, `HTTPRequest` -> `http_request`.
pub(crate) fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1);
            let starts_word = prev.is_some_and(|p| p.is_lowercase() || p.is_ascii_digit())
                || (prev.is_some_and(char::is_uppercase) && next.is_some_and(|n| n.is_lowercase()));
            if starts_word && !out.ends_with('_') {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_names() {
        assert_eq!(snake_case("User"), "user");
        assert_eq!(snake_case("UserAccount"), "user_account");
        assert_eq!(snake_case("HTTPRequest"), "http_request");
        assert_eq!(snake_case("Order2Item"), "order2_item");
        assert_eq!(snake_case("already_snake"), "already_snake");
    }

    #[test]
    fn recognises_option_and_integers() {
        let ty: Type = syn::parse_quote!(::std::option::Option<i64>);
        assert!(is_integer(option_inner(&ty).unwrap()));
        let ty: Type = syn::parse_quote!(Option<String>);
        assert!(!is_integer(option_inner(&ty).unwrap()));
        assert!(option_inner(&syn::parse_quote!(i64)).is_none());
        assert!(!is_integer(&syn::parse_quote!(u64)));
    }

    #[test]
    fn type_names_read_like_source() {
        assert_eq!(
            type_name(&syn::parse_quote!(Option<String>)),
            "Option<String>"
        );
        assert_eq!(
            type_name(&syn::parse_quote!(std::collections::HashMap<String, Vec<u8>>)),
            "std::collections::HashMap<String, Vec<u8>>"
        );
        assert_eq!(type_name(&syn::parse_quote!(&'static str)), "&'static str");
    }

    #[test]
    fn resolves_struct_level_keys_and_reports_unknown_names() {
        let mut errors = Errors::default();
        let model = Model::from_input(
            &syn::parse_quote! {
                #[mapped(primary_key(user_id, group_id, nope))]
                struct Membership { group_id: i64, user_id: i64 }
            },
            &mut errors,
        )
        .unwrap();
        assert_eq!(model.table, "membership");
        assert_eq!(model.key_fields(), [1, 0]);
        let messages: Vec<String> = errors
            .finish()
            .unwrap_err()
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            messages,
            ["`primary_key(...)` names `nope`, which is not a field of `Membership`"]
        );
    }
}
