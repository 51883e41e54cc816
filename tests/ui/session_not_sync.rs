// A Session is used by one thread at a time: sharing `&Session` across threads must not compile.
use orm::prelude::*;

fn share<T: Sync>(_: &T) {}

fn main() {
    let factory = sessionmaker().build();
    let session = factory.session();
    share(&session);
}
