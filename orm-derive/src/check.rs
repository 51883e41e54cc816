//! Stage 3: rules that span several fields.
//!
//! Every rule runs and records its errors, so one compile reports all of them. Once `check`
//! reports nothing, `expand` may rely on: exactly one way of declaring a primary key with at
//! least one and at most four columns, `Option` only in a single-column integer key, at most
//! one version column (a non-key integer), and distinct column names.

use std::collections::HashMap;

use crate::model::{is_integer, option_inner, type_name, Model, RelationKind};
use crate::Errors;

/// The most columns of a composite key: `orm-core` implements `PrimaryKey` for tuples of up to
/// four values.
const MAX_KEY_COLUMNS: usize = 4;

/// Records every rule the model breaks.
pub(crate) fn check(model: &Model, errors: &mut Errors) {
    primary_key(model, errors);
    version(model, errors);
    column_names(model, errors);
    relations(model, errors);
}

fn relations(model: &Model, errors: &mut Errors) {
    for rel in &model.relations {
        for &span in &rel.column_keys {
            errors.at(
                span,
                format!(
                    "`{}` is a relationship, not a column: `primary_key`, `column` and \
                     `version` do not apply to it",
                    rel.ident
                ),
            );
        }
        match (rel.kind, rel.cascade.orphan_span) {
            (RelationKind::ManyToOne, Some(span)) => errors.at(
                span,
                "`delete-orphan` applies to a one-to-many relationship (`Collection<T>`): \
                 declare it on the parent's collection",
            ),
            (RelationKind::ManyToMany, Some(span)) => errors.at(
                span,
                "`delete-orphan` does not apply to a many-to-many relationship: a child may \
                 have several parents; use `delete` to delete the children with the parent",
            ),
            _ => {}
        }
        if let (RelationKind::ManyToOne, Some(secondary)) = (rel.kind, &rel.secondary) {
            errors.spanned(
                secondary,
                "`secondary` makes a many-to-many relationship, whose field is a \
                 `Collection<T>`, not a `Reference<T>`",
            );
        }
        if let (RelationKind::ManyToOne, Some(via)) = (rel.kind, &rel.via) {
            if !model.fields.iter().any(|f| &f.column == via) {
                errors.at(
                    rel.span,
                    format!(
                        "`via = \"{via}\"` names no column of `{}`: a many-to-one relationship \
                         goes through a foreign-key column of its own struct",
                        model.ident
                    ),
                );
            }
        }
    }
}

fn primary_key(model: &Model, errors: &mut Errors) {
    let flagged: Vec<usize> = (0..model.fields.len())
        .filter(|&i| model.fields[i].primary_key.is_some())
        .collect();
    match &model.struct_key {
        Some(key) => {
            for &i in &flagged {
                errors.at(
                    model.fields[i].primary_key.expect("flagged"),
                    "the primary key is already declared on the struct with `primary_key(...)`; \
                     remove one of the two declarations",
                );
            }
            if key.fields.len() > MAX_KEY_COLUMNS {
                errors.at(
                    key.span,
                    format!("a composite primary key may have at most {MAX_KEY_COLUMNS} columns"),
                );
            }
        }
        None => {
            if flagged.is_empty() {
                errors.spanned(
                    &model.ident,
                    format!(
                        "`{}` has no primary key: mark its key field with `#[mapped(primary_key)]`, \
                         or declare a composite key on the struct with \
                         `#[mapped(primary_key(a, b))]`",
                        model.ident
                    ),
                );
            }
            if flagged.len() > 1 {
                let names: Vec<String> = flagged
                    .iter()
                    .map(|&i| model.fields[i].ident.to_string())
                    .collect();
                let first = &names[0];
                for &i in &flagged[1..] {
                    errors.at(
                        model.fields[i].primary_key.expect("flagged"),
                        format!(
                            "`primary_key` is already on field `{first}`; a composite key is \
                             declared on the struct: `#[mapped(primary_key({}))]`",
                            names.join(", ")
                        ),
                    );
                }
            }
        }
    }

    let key = model.key_fields();
    if let [only] = key[..] {
        let ty = &model.fields[only].ty;
        if let Some(inner) = option_inner(ty) {
            if !is_integer(inner) {
                errors.spanned(
                    ty,
                    format!(
                        "a primary key of type `{}` would be generated by the database, which \
                         generates only integer keys: use `Option<i16>`, `Option<i32>` or \
                         `Option<i64>`, or remove the `Option` and assign keys yourself",
                        type_name(ty)
                    ),
                );
            }
        }
    } else {
        for &i in &key {
            let field = &model.fields[i];
            if option_inner(&field.ty).is_some() {
                errors.spanned(
                    &field.ty,
                    format!(
                        "field `{}` of a composite primary key cannot be an `Option`: the \
                         database generates only single-column keys",
                        field.ident
                    ),
                );
            }
        }
    }
}

fn version(model: &Model, errors: &mut Errors) {
    let key = model.key_fields();
    let mut first: Option<&syn::Ident> = None;
    for (i, field) in model.fields.iter().enumerate() {
        let Some(span) = field.version else { continue };
        if let Some(first) = first {
            errors.at(
                span,
                format!("`version` is already on field `{first}`; a table has one version column"),
            );
            continue;
        }
        first = Some(&field.ident);
        if key.contains(&i) {
            errors.at(span, "a primary-key column cannot be the version column");
        } else if option_inner(&field.ty).is_some() {
            errors.spanned(
                &field.ty,
                format!(
                    "the version column cannot be an `Option` (`{}`): it always holds a number; \
                     use `i16`, `i32` or `i64`",
                    type_name(&field.ty)
                ),
            );
        } else if !is_integer(&field.ty) {
            errors.spanned(
                &field.ty,
                format!(
                    "the version column must be an `i16`, `i32` or `i64`, not `{}`",
                    type_name(&field.ty)
                ),
            );
        }
    }
}

fn column_names(model: &Model, errors: &mut Errors) {
    let mut seen: HashMap<&str, &syn::Ident> = HashMap::new();
    for field in &model.fields {
        if let Some(first) = seen.insert(&field.column, &field.ident) {
            errors.at(
                field.column_span,
                format!(
                    "column `{}` is mapped twice: field `{first}` maps it already",
                    field.column
                ),
            );
            // Later duplicates are reported against the first field too.
            seen.insert(&field.column, first);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::derive_errors as errors_of;

    #[test]
    fn missing_primary_key() {
        let errors = errors_of(syn::parse_quote! { struct User { id: i64 } });
        assert_eq!(
            errors,
            [
                "`User` has no primary key: mark its key field with `#[mapped(primary_key)]`, or \
              declare a composite key on the struct with `#[mapped(primary_key(a, b))]`"
            ]
        );
    }

    #[test]
    fn two_field_level_keys_suggest_a_composite_key() {
        let errors = errors_of(syn::parse_quote! {
            struct M {
                #[mapped(primary_key)] a: i64,
                #[mapped(primary_key)] b: i64,
                #[mapped(primary_key)] c: i64,
            }
        });
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(
            errors
                .iter()
                .all(|e| e.contains("`#[mapped(primary_key(a, b, c))]`")),
            "{errors:#?}"
        );
    }

    #[test]
    fn key_declared_twice() {
        let errors = errors_of(syn::parse_quote! {
            #[mapped(primary_key(a, b))]
            struct M { #[mapped(primary_key)] a: i64, b: i64 }
        });
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(errors[0].starts_with("the primary key is already declared on the struct"));
    }

    #[test]
    fn generated_and_composite_key_rules() {
        let errors = errors_of(syn::parse_quote! {
            struct A { #[mapped(primary_key)] id: Option<String> }
        });
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(errors[0].starts_with("a primary key of type `Option<String>` would be generated"));

        let errors = errors_of(syn::parse_quote! {
            #[mapped(primary_key(a, b))]
            struct B { a: Option<i64>, b: i64 }
        });
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(errors[0].starts_with("field `a` of a composite primary key cannot be an `Option`"));

        let errors = errors_of(syn::parse_quote! {
            #[mapped(primary_key(a, b, c, d, e))]
            struct C { a: i64, b: i64, c: i64, d: i64, e: i64 }
        });
        assert_eq!(
            errors,
            ["a composite primary key may have at most 4 columns"]
        );
    }

    #[test]
    fn version_rules_are_all_reported() {
        let errors = errors_of(syn::parse_quote! {
            struct V {
                #[mapped(primary_key, version)] id: i64,
                #[mapped(version)] a: Option<i32>,
                #[mapped(version)] b: String,
            }
        });
        assert_eq!(
            errors,
            [
                "a primary-key column cannot be the version column",
                "`version` is already on field `id`; a table has one version column",
                "`version` is already on field `id`; a table has one version column",
            ]
        );
        let errors = errors_of(syn::parse_quote! {
            struct V { #[mapped(primary_key)] id: i64, #[mapped(version)] a: Option<i32> }
        });
        assert!(errors[0].starts_with("the version column cannot be an `Option` (`Option<i32>`)"));
        let errors = errors_of(syn::parse_quote! {
            struct V { #[mapped(primary_key)] id: i64, #[mapped(version)] a: f64 }
        });
        assert_eq!(
            errors,
            ["the version column must be an `i16`, `i32` or `i64`, not `f64`"]
        );
    }

    #[test]
    fn duplicate_column_names() {
        let errors = errors_of(syn::parse_quote! {
            struct U {
                #[mapped(primary_key)] id: i64,
                name: String,
                #[mapped(column = "name")] other: String,
            }
        });
        assert_eq!(
            errors,
            ["column `name` is mapped twice: field `name` maps it already"]
        );
    }

    #[test]
    fn shape_errors() {
        assert_eq!(
            errors_of(syn::parse_quote! { struct T(i64); }),
            ["`Mapped` needs named fields, one per column: use `struct Name { field: Type }`"]
        );
        assert_eq!(
            errors_of(syn::parse_quote! { enum E { A } }),
            ["`Mapped` can only be derived for a struct with named fields"]
        );
        assert_eq!(
            errors_of(syn::parse_quote! { struct G<T> { #[mapped(primary_key)] id: T } }),
            ["`Mapped` cannot be derived for a generic struct: a mapped struct is one table"]
        );
    }
}
