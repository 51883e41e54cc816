//! Stage 4: code generation, from the checked model alone.
//!
//! The output is one `const _: () = { ... };` block holding the table metadata, the `Mapped`
//! impl and an inherent impl with one column constant per field. Every path is absolute under
//! the crate path (`::orm::__private::...`) or `::core`, every local ident starts with `__`, and
//! each use of a field's type is spanned on that type, so that an unsupported type is reported
//! on the user's field.

use proc_macro2::{Group, Literal, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::Type;

use crate::model::{Field, Model, RelationKind};

/// Generates the derive's output for a model that passed `check`.
pub(crate) fn expand(model: &Model) -> TokenStream {
    let ident = &model.ident;
    let krate = &model.crate_path;
    let p = quote!(#krate::__private);
    let gen = Gen { model, p: &p };

    let table = gen.table();
    let key_type = gen.key_type();
    let key = gen.body_key();
    let from_row = gen.body_from_row();
    let from_row_with_key = gen.body_from_row_with_key();
    let key_from_row = gen.body_key_from_row();
    let column_ref = gen.body_column_ref();
    let set_column = gen.body_set_column();
    let set_generated_key = gen.body_set_generated_key();
    let clear_generated_key = gen.body_clear_generated_key();
    let changed_columns = gen.body_changed_columns();
    let clone_row = gen.body_clone_row();
    let columns = gen.column_consts();
    let relations = gen.relation_consts();
    let relation_entries = gen.relation_entries();

    quote! {
        const _: () = {
            const __TABLE: &'static #p::Table = &#table;

            #[automatically_derived]
            impl #p::Mapped for #ident {
                type Key = #key_type;

                const TABLE: &'static #p::Table = __TABLE;

                fn key(&self) -> ::core::option::Option<Self::Key> {
                    #key
                }

                fn from_row(__row: &#p::Row<'_>, __offset: usize) -> #p::Result<Self> {
                    #from_row
                }

                fn key_from_row(__row: &#p::Row<'_>, __offset: usize) -> #p::Result<Self::Key> {
                    #key_from_row
                }

                fn from_row_with_key(
                    __row: &#p::Row<'_>,
                    __offset: usize,
                    __key: Self::Key,
                ) -> #p::Result<Self> {
                    #from_row_with_key
                }

                fn column_ref(&self, __column: usize) -> #p::ValueRef<'_> {
                    #column_ref
                }

                fn set_column(&mut self, __column: usize, __value: #p::Value) -> #p::Result<()> {
                    #set_column
                }

                fn set_generated_key(&mut self, __value: #p::Value) -> #p::Result<()> {
                    #set_generated_key
                }

                fn clear_generated_key(&mut self) {
                    #clear_generated_key
                }

                fn changed_columns(&self, __before: &Self) -> #p::ColumnSet {
                    #changed_columns
                }

                fn clone_row(&self) -> Self {
                    #clone_row
                }
                #relation_entries
            }

            #[automatically_derived]
            #[allow(non_upper_case_globals)]
            impl #ident {
                #(#columns)*
                #(#relations)*
            }
        };
    }
}

/// What every generator needs: the model and the path of `__private`.
struct Gen<'a> {
    model: &'a Model,
    p: &'a TokenStream,
}

/// A column position as an unsuffixed literal (`3`, not `3usize`).
fn pos(i: usize) -> Literal {
    Literal::usize_unsuffixed(i)
}

/// `tokens` with every span set to `span`.
fn respan(tokens: &TokenStream, span: Span) -> TokenStream {
    tokens
        .clone()
        .into_iter()
        .map(|mut tree| {
            if let TokenTree::Group(group) = &tree {
                let mut inner = Group::new(group.delimiter(), respan(&group.stream(), span));
                inner.set_span(span);
                tree = TokenTree::Group(inner);
            } else {
                tree.set_span(span);
            }
            tree
        })
        .collect()
}

/// `tokens` spanned so that together they cover `ty`: the first token's span on every token
/// but the last, which gets the last token's span. rustc reports a failed bound of a call on
/// its callee's span, which then underlines the whole field type.
fn over_type(tokens: TokenStream, ty: &Type) -> TokenStream {
    let spans: Vec<Span> = ty.to_token_stream().into_iter().map(|t| t.span()).collect();
    let (Some(&first), Some(&last)) = (spans.first(), spans.last()) else {
        return tokens;
    };
    let mut trees: Vec<TokenTree> = respan(&tokens, first).into_iter().collect();
    if let Some(tree) = trees.last_mut() {
        tree.set_span(last);
    }
    trees.into_iter().collect()
}

impl Gen<'_> {
    /// `<Ty as ColumnType>`, spanned on the field's type: an unsupported type is reported
    /// there, with `ColumnType`'s `on_unimplemented` message.
    fn column_type(&self, ty: &Type) -> TokenStream {
        let p = respan(self.p, ty.span());
        quote_spanned!(ty.span()=> <#ty as #p::ColumnType>)
    }

    /// The `Table { ... }` expression.
    fn table(&self) -> TokenStream {
        let p = self.p;
        let m = self.model;
        let name = &m.table;
        let key = m.key_fields();
        let generated = m.generated_key().map(|(i, _)| i);
        let columns = m.fields.iter().enumerate().map(|(i, f)| {
            let column = &f.column;
            let field = f.ident.unraw().to_string();
            let ty = &f.ty;
            let column_type = self.column_type(ty);
            // Key columns are NOT NULL even when the field is an `Option` (a generated key).
            let nullable = if key.contains(&i) {
                quote!(false)
            } else {
                quote!(#column_type::NULLABLE)
            };
            let is_generated = generated == Some(i);
            quote! {
                #p::ColumnDef {
                    name: #column,
                    field: #field,
                    sql_type: #column_type::SQL_TYPE,
                    nullable: #nullable,
                    generated: #is_generated,
                }
            }
        });
        let primary_key = key.iter().copied().map(pos);
        let foreign_keys = m.fields.iter().enumerate().filter_map(|(i, f)| {
            let fk = f.foreign_key.as_ref()?;
            let (i, table, column) = (pos(i), &fk.table, &fk.column);
            Some(quote! {
                #p::ForeignKey { columns: &[#i], ref_table: #table, ref_columns: &[#column] }
            })
        });
        let version = match m.version() {
            Some(i) => {
                let i = pos(i);
                quote!(::core::option::Option::Some(#i))
            }
            None => quote!(::core::option::Option::None),
        };
        quote! {
            #p::Table {
                name: #name,
                columns: &[#(#columns),*],
                primary_key: &[#(#primary_key),*],
                foreign_keys: &[#(#foreign_keys),*],
                version: #version,
            }
        }
    }

    /// The key's fields, in key order.
    fn key_fields(&self) -> Vec<(usize, &Field)> {
        self.model
            .key_fields()
            .into_iter()
            .map(|i| (i, &self.model.fields[i]))
            .collect()
    }

    /// `type Key = ...`: a generated key's inner type, one field's type, or a tuple.
    fn key_type(&self) -> TokenStream {
        if let Some((_, inner)) = self.model.generated_key() {
            return quote!(#inner);
        }
        match &self.key_fields()[..] {
            [(_, f)] => {
                let ty = &f.ty;
                quote!(#ty)
            }
            fields => {
                let types = fields.iter().map(|(_, f)| &f.ty);
                quote!((#(#types),*))
            }
        }
    }

    /// The body of `key`.
    fn body_key(&self) -> TokenStream {
        let clone = |f: &Field| {
            let ident = &f.ident;
            quote!(::core::clone::Clone::clone(&self.#ident))
        };
        let fields = self.key_fields();
        match &fields[..] {
            // A generated key is already an `Option`: `None` until the database assigns it.
            [(_, f)] if self.model.generated_key().is_some() => clone(f),
            [(_, f)] => {
                let value = clone(f);
                quote!(::core::option::Option::Some(#value))
            }
            fields => {
                let values = fields.iter().map(|(_, f)| clone(f));
                quote!(::core::option::Option::Some((#(#values),*)))
            }
        }
    }

    /// `<Ty as ColumnType>::decode(__row, __offset + i)`, naming column `i` on failure (a
    /// `Result`).
    fn decode(&self, i: usize, ty: &Type) -> TokenStream {
        let p = self.p;
        let column_type = self.column_type(ty);
        let offset = if i == 0 {
            quote!(__offset)
        } else {
            let i = pos(i);
            quote!(__offset + #i)
        };
        let column = pos(i);
        quote! {
            #column_type::decode(__row, #offset)
                .map_err(|__e| #p::decode_error(__TABLE, #column, __e))
        }
    }

    /// The body of `from_row`.
    fn body_from_row(&self) -> TokenStream {
        let p = self.p;
        let fields = self.model.fields.iter().enumerate().map(|(i, f)| {
            let ident = &f.ident;
            let value = self.decode(i, &f.ty);
            quote!(#ident: #value?)
        });
        let relations = self.model.relations.iter().map(|r| {
            let (ident, ty) = (&r.ident, &r.ty);
            quote!(#ident: <#ty as #p::RelationField>::unloaded())
        });
        quote! {
            ::core::result::Result::Ok(Self {
                #(#fields,)*
                #(#relations,)*
            })
        }
    }

    /// The body of `from_row_with_key`: `from_row`, with the key's fields taken from `__key`.
    fn body_from_row_with_key(&self) -> TokenStream {
        let p = self.p;
        let key = self.key_fields();
        let parts: Vec<_> = (0..key.len()).map(|j| format_ident!("__k{}", j)).collect();
        let generated = self.model.generated_key().map(|(i, _)| i);
        let fields = self.model.fields.iter().enumerate().map(|(i, f)| {
            let ident = &f.ident;
            match key.iter().position(|(k, _)| *k == i) {
                Some(j) if generated == Some(i) => {
                    let part = &parts[j];
                    quote!(#ident: ::core::option::Option::Some(#part))
                }
                Some(j) => {
                    let part = &parts[j];
                    quote!(#ident: #part)
                }
                None => {
                    let value = self.decode(i, &f.ty);
                    quote!(#ident: #value?)
                }
            }
        });
        let relations = self.model.relations.iter().map(|r| {
            let (ident, ty) = (&r.ident, &r.ty);
            quote!(#ident: <#ty as #p::RelationField>::unloaded())
        });
        let bind = match &parts[..] {
            [part] => quote!(let #part = __key;),
            parts => quote!(let (#(#parts),*) = __key;),
        };
        quote! {
            #bind
            ::core::result::Result::Ok(Self {
                #(#fields,)*
                #(#relations,)*
            })
        }
    }

    /// The body of `key_from_row`.
    fn body_key_from_row(&self) -> TokenStream {
        if let Some((i, inner)) = self.model.generated_key() {
            return self.decode(i, inner);
        }
        match &self.key_fields()[..] {
            [(i, f)] => self.decode(*i, &f.ty),
            fields => {
                let values = fields.iter().map(|(i, f)| self.decode(*i, &f.ty));
                quote!(::core::result::Result::Ok((#(#values?),*)))
            }
        }
    }

    /// The body of `column_ref`.
    fn body_column_ref(&self) -> TokenStream {
        let p = self.p;
        let arms = self.model.fields.iter().enumerate().map(|(i, f)| {
            let (i, ident) = (pos(i), &f.ident);
            let column_type = self.column_type(&f.ty);
            quote!(#i => #column_type::value_ref(&self.#ident),)
        });
        quote! {
            match __column {
                #(#arms)*
                _ => #p::ValueRef::Null,
            }
        }
    }

    /// The body of `set_column`.
    fn body_set_column(&self) -> TokenStream {
        let p = self.p;
        let arms = self.model.fields.iter().enumerate().map(|(i, f)| {
            let (i, ident) = (pos(i), &f.ident);
            let column_type = self.column_type(&f.ty);
            quote! {
                #i => {
                    self.#ident = #column_type::from_value(__value)
                        .map_err(|__e| #p::decode_error(__TABLE, #i, __e))?;
                }
            }
        });
        quote! {
            match __column {
                #(#arms)*
                _ => {}
            }
            ::core::result::Result::Ok(())
        }
    }

    /// The body of `set_generated_key`.
    fn body_set_generated_key(&self) -> TokenStream {
        let p = self.p;
        match self.model.generated_key() {
            Some((i, inner)) => {
                let ident = &self.model.fields[i].ident;
                let column = pos(i);
                quote! {
                    self.#ident = ::core::option::Option::Some(
                        #p::from_value::<#inner>(__value, __TABLE, #column)?
                    );
                    ::core::result::Result::Ok(())
                }
            }
            None => quote! {
                ::core::result::Result::Err(#p::no_generated_key(__TABLE))
            },
        }
    }

    /// The body of `clear_generated_key`.
    fn body_clear_generated_key(&self) -> TokenStream {
        match self.model.generated_key() {
            Some((i, _)) => {
                let ident = &self.model.fields[i].ident;
                quote!(self.#ident = ::core::option::Option::None;)
            }
            None => TokenStream::new(),
        }
    }

    /// The body of `changed_columns`.
    fn body_changed_columns(&self) -> TokenStream {
        let p = self.p;
        let checks = self.model.fields.iter().enumerate().map(|(i, f)| {
            let (i, ident) = (pos(i), &f.ident);
            quote! {
                if self.#ident != __before.#ident {
                    __changed.insert(#i);
                }
            }
        });
        quote! {
            let mut __changed = <#p::ColumnSet as ::core::default::Default>::default();
            #(#checks)*
            __changed
        }
    }

    /// The body of `clone_row`.
    fn body_clone_row(&self) -> TokenStream {
        let m = self.model;
        let idents = m.fields.iter().map(|f| &f.ident);
        let fields = idents
            .chain(m.relations.iter().map(|r| &r.ident))
            .map(|ident| quote!(#ident: ::core::clone::Clone::clone(&self.#ident)));
        quote!(Self { #(#fields,)* })
    }

    /// One `pub const field: Column<Struct, Ty>` per field.
    fn column_consts(&self) -> Vec<TokenStream> {
        let p = self.p;
        let m = self.model;
        let owner = &m.ident;
        m.fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let (vis, ident, ty) = (&f.vis, &f.ident, &f.ty);
                let doc = format!(" Column `{}.{}`.", m.table, f.column);
                let i = pos(i);
                // `Column::new` requires `Ty: ColumnType`; its callee path is spanned over the
                // field's type so that a failure is reported there, not on the derive.
                let new = over_type(quote!(#p::Column::new), ty);
                quote! {
                    #[doc = #doc]
                    #vis const #ident: #p::Column<#owner, #ty> =
                        #new(#i, |__r: &#owner| &__r.#ident, |__r: &mut #owner| &mut __r.#ident);
                }
            })
            .collect()
    }
}

impl Gen<'_> {
    /// One `pub const field: OneToMany<Struct, Child>` (or `ManyToOne<Struct, Parent>`, or
    /// `ManyToMany<Struct, Other>`) per relationship field.
    fn relation_consts(&self) -> Vec<TokenStream> {
        let p = self.p;
        let m = self.model;
        let owner = &m.ident;
        m.relations
            .iter()
            .map(|r| {
                let (vis, ident, target) = (&r.vis, &r.ident, &r.target);
                let name = ident.unraw().to_string();
                let c = &r.cascade;
                let (save_update, merge, expunge, delete, delete_orphan) =
                    (c.save_update, c.merge, c.expunge, c.delete, c.delete_orphan);
                let via = match &r.via {
                    Some(via) => quote!(::core::option::Option::Some(#via)),
                    None => quote!(::core::option::Option::None),
                };
                let (handle, back_field, doc) = match r.kind {
                    RelationKind::OneToMany => (
                        quote!(OneToMany),
                        quote!(Reference<#owner>),
                        format!(" One-to-many relationship `{}.{name}`.", m.ident),
                    ),
                    RelationKind::ManyToOne => (
                        quote!(ManyToOne),
                        quote!(Collection<#owner>),
                        format!(" Many-to-one relationship `{}.{name}`.", m.ident),
                    ),
                    RelationKind::ManyToMany => (
                        quote!(ManyToMany),
                        quote!(Collection<#owner>),
                        format!(" Many-to-many relationship `{}.{name}`.", m.ident),
                    ),
                };
                // The association table's metadata, for a many-to-many relationship.
                let secondary = r
                    .secondary
                    .as_ref()
                    .map(|s| quote!(<#s as #p::Mapped>::TABLE,));
                // The mirror field is named, so a typo or a field of the wrong type is a
                // compile error here.
                let back = match &r.back_populates {
                    Some(back) => quote! {
                        ::core::option::Option::Some(
                            |__r: &mut #target| -> &mut #p::#back_field { &mut __r.#back }
                        )
                    },
                    None => quote!(::core::option::Option::None),
                };
                quote! {
                    #[doc = #doc]
                    #vis const #ident: #p::#handle<#owner, #target> = #p::#handle::new(
                        #p::RelationDef {
                            name: #name,
                            cascade: #p::Cascade {
                                save_update: #save_update,
                                merge: #merge,
                                expunge: #expunge,
                                delete: #delete,
                                delete_orphan: #delete_orphan,
                            },
                            via: #via,
                        },
                        #secondary
                        |__r: &#owner| &__r.#ident,
                        |__r: &mut #owner| &mut __r.#ident,
                        #back,
                    );
                }
            })
            .collect()
    }

    /// `const RELATIONS`, when the struct has relationships.
    fn relation_entries(&self) -> TokenStream {
        let m = self.model;
        if m.relations.is_empty() {
            return TokenStream::new();
        }
        let owner = &m.ident;
        let entries = m.relations.iter().map(|r| {
            let ident = &r.ident;
            quote!(&#owner::#ident.entry())
        });
        quote! {
            const RELATIONS: &'static [&'static (
                dyn ::core::any::Any + ::core::marker::Send + ::core::marker::Sync
            )] = &[#(#entries),*];
        }
    }
}

#[cfg(test)]
mod tests {
    /// The derive's output for `input`, formatted as `cargo expand` would show it.
    fn expand(input: syn::DeriveInput) -> String {
        let tokens = crate::derive(&input).expect("a valid model");
        prettyplease::unparse(&syn::parse2(tokens).expect("the output parses as a file"))
    }

    #[test]
    fn user_expansion() {
        insta::assert_snapshot!(expand(syn::parse_quote! {
            #[derive(Mapped)]
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
        }));
    }

    #[test]
    fn relationship_expansion() {
        insta::assert_snapshot!(expand(syn::parse_quote! {
            #[derive(Mapped)]
            #[mapped(table = "nodes")]
            pub struct Node {
                #[mapped(primary_key)]
                pub id: Option<i64>,
                #[mapped(foreign_key = "nodes.id")]
                pub parent_id: Option<i64>,
                #[mapped(relationship(back_populates = "children"))]
                pub parent: Reference<Node>,
                #[mapped(relationship(back_populates = "parent", cascade = "all, delete-orphan"))]
                pub children: Collection<Node>,
            }
        }));
    }

    #[test]
    fn composite_key_expansion_with_crate_path() {
        insta::assert_snapshot!(expand(syn::parse_quote! {
            #[derive(Mapped)]
            #[mapped(table = "memberships", primary_key(group_id, user_id), crate = "my::orm")]
            pub struct Membership {
                pub group_id: i64,
                pub user_id: i64,
                pub(crate) role: String,
            }
        }));
    }
}
