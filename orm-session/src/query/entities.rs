//! The session's [`EntityLoader`]: selected entities decode through the identity map.

use orm_core::engine::row::Row;
use orm_core::expr::entities::{EntityLoader, Handles};
use orm_core::model::Mapped;

use crate::core::Core;
use crate::object::Obj;
use crate::relation::load::EagerLoad;

/// Access to the session's identity map while rows decode, and the eager loaders that
/// collect the objects decoded.
pub(crate) struct Loader<'a> {
    pub(crate) core: &'a mut Core,
    pub(crate) eager: &'a mut [Box<dyn EagerLoad>],
    /// The addresses of the objects of the row, in order, when a joined collection may repeat
    /// rows (to recognise a repeated one).
    pub(crate) objects: Option<Vec<usize>>,
}

/// Selected entities come back as [`Obj`] handles.
pub struct ObjHandles;

impl Handles for ObjHandles {
    type Handle<T: Mapped> = Obj<T>;
}

impl EntityLoader for Loader<'_> {
    type Handles = ObjHandles;
    fn load<T: Mapped>(&mut self, row: &Row<'_>, at: usize) -> orm_core::error::Result<Obj<T>> {
        let obj = self.core.entity_at::<T>(row, at)?;
        if let Some(objects) = &mut self.objects {
            objects.push(obj.addr());
        }
        for loader in self.eager.iter_mut() {
            loader.collect(&obj);
        }
        Ok(obj)
    }
}
