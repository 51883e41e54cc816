//! Stage 1: `#[mapped(...)]` attributes as plain data.
//!
//! Every key is checked here, one attribute at a time: an unknown key or a malformed value is
//! recorded with a span on the offending token, and parsing goes on with the next key so that
//! one compile reports every mistake.

use proc_macro2::Span;
use syn::meta::ParseNestedMeta;
use syn::parse::ParseStream;
use syn::punctuated::Punctuated;
use syn::{Attribute, Ident, Lit, LitStr, Path, Token};

use crate::Errors;

/// The keys of a struct-level `#[mapped(...)]`.
#[derive(Default)]
pub(crate) struct StructAttrs {
    /// `table = "users"`.
    pub table: Option<LitStr>,
    /// `crate = "some::path"`.
    pub crate_path: Option<Path>,
    /// `primary_key(a, b)`.
    pub primary_key: Option<KeyList>,
}

/// A struct-level `primary_key(a, b)`.
pub(crate) struct KeyList {
    /// The `primary_key` key itself.
    pub span: Span,
    /// The field names, in key order.
    pub fields: Vec<Ident>,
}

/// The keys of a field-level `#[mapped(...)]`.
#[derive(Default)]
pub(crate) struct FieldAttrs {
    /// `primary_key`, with its span.
    pub primary_key: Option<Span>,
    /// `column = "full_name"`.
    pub column: Option<LitStr>,
    /// `version`, with its span.
    pub version: Option<Span>,
    /// `foreign_key = "users.id"`.
    pub foreign_key: Option<ForeignKeyRef>,
    /// `relationship(...)`: the field is a relationship, not a column.
    pub relationship: Option<RelationshipAttr>,
}

/// The keys of a field-level `relationship(...)`.
#[derive(Default)]
pub(crate) struct RelationshipAttr {
    /// The `relationship` key itself.
    pub span: Option<Span>,
    /// `back_populates = "field"`: the field of the other struct that mirrors this one.
    pub back_populates: Option<LitStr>,
    /// `cascade = "all, delete-orphan"`.
    pub cascade: Option<Cascade>,
    /// `via = "user_id"`: the foreign-key column, when several reference the other table.
    pub via: Option<LitStr>,
    /// `secondary = PostTag`: the association table of a many-to-many relationship.
    pub secondary: Option<syn::Type>,
}

/// The cascades of a relationship, SQLAlchemy's `cascade="..."`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cascade {
    pub save_update: bool,
    pub merge: bool,
    pub expunge: bool,
    pub delete: bool,
    pub delete_orphan: bool,
    /// Where `delete-orphan` was written, for errors.
    pub orphan_span: Option<Span>,
}

impl Default for Cascade {
    /// SQLAlchemy's default: `save-update, merge`.
    fn default() -> Self {
        Cascade {
            save_update: true,
            merge: true,
            expunge: false,
            delete: false,
            delete_orphan: false,
            orphan_span: None,
        }
    }
}

impl Cascade {
    /// Parses `"save-update, merge, expunge, delete, delete-orphan"`, `"all"` (every cascade but
    /// `delete-orphan`) or `"none"`.
    fn parse(lit: &LitStr) -> syn::Result<Cascade> {
        let mut out = Cascade {
            save_update: false,
            merge: false,
            expunge: false,
            delete: false,
            delete_orphan: false,
            orphan_span: None,
        };
        for word in lit.value().split(',').map(str::trim) {
            match word {
                "all" => {
                    out.save_update = true;
                    out.merge = true;
                    out.expunge = true;
                    out.delete = true;
                }
                "save-update" => out.save_update = true,
                "merge" => out.merge = true,
                "expunge" => out.expunge = true,
                "delete" => out.delete = true,
                "delete-orphan" => {
                    out.delete_orphan = true;
                    out.orphan_span = Some(lit.span());
                }
                // Expiry and refresh always reach relationships here.
                "refresh-expire" | "none" | "" => {}
                other => {
                    return Err(syn::Error::new(
                        lit.span(),
                        format!(
                            "unknown cascade `{other}`; expected a list of `save-update`, \
                             `merge`, `expunge`, `delete`, `delete-orphan`, or `all`"
                        ),
                    ))
                }
            }
        }
        Ok(out)
    }
}

/// The target of a field-level `foreign_key = "table.column"`.
pub(crate) struct ForeignKeyRef {
    /// The referenced table.
    pub table: String,
    /// The referenced column.
    pub column: String,
}

const STRUCT_KEYS: &str = "`table`, `primary_key(...)` or `crate`";
const FIELD_KEYS: &str = "`primary_key`, `column`, `version`, `foreign_key` or `relationship(...)`";
const RELATIONSHIP_KEYS: &str = "`back_populates`, `cascade`, `via` or `secondary`";

/// Reads the `#[mapped(...)]` attributes of the struct.
pub(crate) fn struct_attrs(attrs: &[Attribute], errors: &mut Errors) -> StructAttrs {
    let mut out = StructAttrs::default();
    for attr in mapped(attrs) {
        each_key(attr, errors, |meta| {
            let key = key_name(&meta.path);
            match key.as_str() {
                "table" => {
                    let lit = non_empty(string(meta, "table = \"users\"")?, "table name")?;
                    set_once(&mut out.table, lit, meta, &key)
                }
                "crate" => {
                    let lit = string(meta, "crate = \"::orm\"")?;
                    let path = lit.parse::<Path>().map_err(|_| {
                        syn::Error::new(
                            lit.span(),
                            "expected a path to the `orm` crate, such as `::orm`",
                        )
                    })?;
                    set_once(&mut out.crate_path, path, meta, &key)
                }
                "primary_key" => {
                    if !meta.input.peek(syn::token::Paren) {
                        return Err(meta.error(
                            "on the struct, `primary_key` lists the fields of a composite key: \
                             `#[mapped(primary_key(a, b))]`; a single-column key is marked on \
                             its field with `#[mapped(primary_key)]`",
                        ));
                    }
                    let content;
                    syn::parenthesized!(content in meta.input);
                    let fields: Punctuated<Ident, Token![,]> =
                        content.parse_terminated(field_name, Token![,])?;
                    if fields.is_empty() {
                        return Err(meta.error("`primary_key()` lists no fields"));
                    }
                    let list = KeyList {
                        span: key_span(meta),
                        fields: fields.into_iter().collect(),
                    };
                    set_once(&mut out.primary_key, list, meta, &key)
                }
                _ => Err(meta.error(format!(
                    "unknown struct attribute `{key}`; expected {STRUCT_KEYS}"
                ))),
            }
        });
    }
    out
}

/// Reads the `#[mapped(...)]` attributes of one field.
pub(crate) fn field_attrs(attrs: &[Attribute], errors: &mut Errors) -> FieldAttrs {
    let mut out = FieldAttrs::default();
    for attr in mapped(attrs) {
        each_key(attr, errors, |meta| {
            let key = key_name(&meta.path);
            match key.as_str() {
                "primary_key" => {
                    flag(
                        meta,
                        "on a field, `primary_key` takes no value; a composite key is declared \
                         on the struct: `#[mapped(primary_key(a, b))]`",
                    )?;
                    set_once(&mut out.primary_key, key_span(meta), meta, &key)
                }
                "version" => {
                    flag(meta, "`version` takes no value")?;
                    set_once(&mut out.version, key_span(meta), meta, &key)
                }
                "column" => {
                    let lit = non_empty(string(meta, "column = \"full_name\"")?, "column name")?;
                    set_once(&mut out.column, lit, meta, &key)
                }
                "foreign_key" => {
                    let lit = string(meta, "foreign_key = \"users.id\"")?;
                    let value = lit.value();
                    let target = match value.split_once('.') {
                        Some((table, column))
                            if !table.is_empty() && !column.is_empty() && !column.contains('.') =>
                        {
                            ForeignKeyRef {
                                table: table.to_owned(),
                                column: column.to_owned(),
                            }
                        }
                        _ => {
                            return Err(syn::Error::new(
                                lit.span(),
                                format!(
                                    "expected the referenced `table.column`, such as \
                                     `\"users.id\"`, found `{value:?}`"
                                ),
                            ))
                        }
                    };
                    set_once(&mut out.foreign_key, target, meta, &key)
                }
                "relationship" => {
                    let rel = relationship(meta)?;
                    set_once(&mut out.relationship, rel, meta, &key)
                }
                _ => Err(meta.error(format!(
                    "unknown field attribute `{key}`; expected {FIELD_KEYS}"
                ))),
            }
        });
    }
    out
}

/// Reads `relationship` or `relationship(back_populates = "..", cascade = "..", via = "..")`.
fn relationship(meta: &ParseNestedMeta<'_>) -> syn::Result<RelationshipAttr> {
    let mut out = RelationshipAttr {
        span: Some(key_span(meta)),
        ..RelationshipAttr::default()
    };
    if !meta.input.peek(syn::token::Paren) {
        flag(
            meta,
            "expected `relationship` or `relationship(back_populates = \"field\", ..)`",
        )?;
        return Ok(out);
    }
    meta.parse_nested_meta(|inner| {
        let key = key_name(&inner.path);
        match key.as_str() {
            "back_populates" => {
                let lit = non_empty(string(&inner, "back_populates = \"user\"")?, "field name")?;
                set_once(&mut out.back_populates, lit, &inner, &key)
            }
            "cascade" => {
                let lit = string(&inner, "cascade = \"all, delete-orphan\"")?;
                set_once(&mut out.cascade, Cascade::parse(&lit)?, &inner, &key)
            }
            "via" => {
                let lit = non_empty(string(&inner, "via = \"user_id\"")?, "column name")?;
                set_once(&mut out.via, lit, &inner, &key)
            }
            "secondary" => {
                let ty: syn::Type = inner.value()?.parse().map_err(|e| {
                    syn::Error::new(
                        e.span(),
                        "expected the association table's struct: `secondary = PostTag`",
                    )
                })?;
                set_once(&mut out.secondary, ty, &inner, &key)
            }
            _ => Err(inner.error(format!(
                "unknown relationship attribute `{key}`; expected {RELATIONSHIP_KEYS}"
            ))),
        }
    })?;
    Ok(out)
}

/// The attributes that belong to this derive.
fn mapped(attrs: &[Attribute]) -> impl Iterator<Item = &Attribute> {
    attrs.iter().filter(|a| a.path().is_ident("mapped"))
}

/// Runs `f` on each `key ...` of `#[mapped(key ..., key ...)]`. An error from `f` is recorded
/// and the rest of that key is skipped, so that the next key is still read.
fn each_key(
    attr: &Attribute,
    errors: &mut Errors,
    mut f: impl FnMut(&ParseNestedMeta<'_>) -> syn::Result<()>,
) {
    let result = attr.parse_nested_meta(|meta| {
        if let Err(e) = f(&meta) {
            errors.push(e);
            skip_to_comma(meta.input)?;
        }
        Ok(())
    });
    if let Err(e) = result {
        errors.push(e);
    }
}

/// Consumes the tokens up to the next `,` (or the end) of an attribute list.
fn skip_to_comma(input: ParseStream<'_>) -> syn::Result<()> {
    while !input.is_empty() && !input.peek(Token![,]) {
        input.parse::<proc_macro2::TokenTree>()?;
    }
    Ok(())
}

/// The key as written (`table`, or `a::b` for a path).
fn key_name(path: &Path) -> String {
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    segments.join("::")
}

/// Stores a key's value, rejecting a key given twice.
fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    meta: &ParseNestedMeta<'_>,
    key: &str,
) -> syn::Result<()> {
    if slot.is_some() {
        return Err(syn::Error::new_spanned(
            &meta.path,
            format!("duplicate `{key}` attribute"),
        ));
    }
    *slot = Some(value);
    Ok(())
}

/// Accepts a key without a value.
fn flag(meta: &ParseNestedMeta<'_>, message: &str) -> syn::Result<()> {
    if meta.input.is_empty() || meta.input.peek(Token![,]) {
        Ok(())
    } else {
        Err(meta.error(message))
    }
}

/// Reads `= "string"`; `example` shows the expected form.
fn string(meta: &ParseNestedMeta<'_>, example: &str) -> syn::Result<LitStr> {
    if !meta.input.peek(Token![=]) {
        return Err(meta.error(format!("expected `{example}`")));
    }
    let input = meta.value()?;
    let expected = format!("expected a string literal: `{example}`");
    match input.parse::<Lit>() {
        Ok(Lit::Str(lit)) => Ok(lit),
        Ok(other) => Err(syn::Error::new_spanned(other, expected)),
        Err(e) => Err(syn::Error::new(e.span(), expected)),
    }
}

/// Rejects an empty string.
fn non_empty(lit: LitStr, what: &str) -> syn::Result<LitStr> {
    if lit.value().is_empty() {
        return Err(syn::Error::new(
            lit.span(),
            format!("the {what} must not be empty"),
        ));
    }
    Ok(lit)
}

/// The span of a (single-identifier) key.
fn key_span(meta: &ParseNestedMeta<'_>) -> Span {
    meta.path.segments[0].ident.span()
}

/// Parses a field name in `primary_key(a, b)`, with a readable error for anything else.
fn field_name(input: ParseStream<'_>) -> syn::Result<Ident> {
    input
        .parse::<Ident>()
        .map_err(|e| syn::Error::new(e.span(), "expected a field name, as in `primary_key(a, b)`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn struct_errors(attrs: Vec<Attribute>) -> (StructAttrs, Vec<String>) {
        let mut errors = Errors::default();
        let out = struct_attrs(&attrs, &mut errors);
        let messages = errors
            .finish()
            .err()
            .into_iter()
            .flatten()
            .map(|e| e.to_string())
            .collect();
        (out, messages)
    }

    fn field_errors(attrs: Vec<Attribute>) -> (FieldAttrs, Vec<String>) {
        let mut errors = Errors::default();
        let out = field_attrs(&attrs, &mut errors);
        let messages = errors
            .finish()
            .err()
            .into_iter()
            .flatten()
            .map(|e| e.to_string())
            .collect();
        (out, messages)
    }

    #[test]
    fn reads_struct_keys() {
        let (out, errors) = struct_errors(vec![
            syn::parse_quote!(#[mapped(table = "memberships", primary_key(group_id, user_id))]),
            syn::parse_quote!(#[mapped(crate = "my::orm")]),
            syn::parse_quote!(#[derive(Debug)]),
        ]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(out.table.unwrap().value(), "memberships");
        let key = out.primary_key.unwrap();
        assert_eq!(key.fields, ["group_id", "user_id"]);
        let path = out.crate_path.unwrap();
        assert_eq!(quote::quote!(#path).to_string(), "my :: orm");
    }

    #[test]
    fn reads_field_keys() {
        let (out, errors) = field_errors(vec![
            syn::parse_quote!(#[mapped(primary_key, column = "uid")]),
            syn::parse_quote!(#[mapped(foreign_key = "users.id")]),
        ]);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(out.primary_key.is_some() && out.version.is_none());
        assert_eq!(out.column.unwrap().value(), "uid");
        let fk = out.foreign_key.unwrap();
        assert_eq!((fk.table.as_str(), fk.column.as_str()), ("users", "id"));
    }

    #[test]
    fn reports_every_bad_key_and_keeps_the_good_ones() {
        let (out, errors) = field_errors(vec![syn::parse_quote!(
            #[mapped(colum = "x", version, foreign_key = "users", primary_key = true, column = 3)]
        )]);
        assert_eq!(
            errors,
            [
                "unknown field attribute `colum`; expected `primary_key`, `column`, `version`, `foreign_key` or `relationship(...)`",
                "expected the referenced `table.column`, such as `\"users.id\"`, found `\"users\"`",
                "on a field, `primary_key` takes no value; a composite key is declared on the struct: `#[mapped(primary_key(a, b))]`",
                "expected a string literal: `column = \"full_name\"`",
            ]
        );
        assert!(out.version.is_some());
    }

    #[test]
    fn rejects_duplicates_and_malformed_struct_keys() {
        let (_, errors) = struct_errors(vec![
            syn::parse_quote!(#[mapped(table = "a", table = "b")]),
            syn::parse_quote!(#[mapped(primary_key, crate = "not a path", table)]),
            syn::parse_quote!(#[mapped]),
        ]);
        assert_eq!(errors.len(), 5, "{errors:#?}");
        assert_eq!(errors[0], "duplicate `table` attribute");
        assert!(errors[1].starts_with("on the struct, `primary_key` lists the fields"));
        assert_eq!(
            errors[2],
            "expected a path to the `orm` crate, such as `::orm`"
        );
        assert_eq!(errors[3], "expected `table = \"users\"`");
        assert!(
            errors[4].contains("expected attribute arguments in parentheses"),
            "{}",
            errors[4]
        );
    }
}
