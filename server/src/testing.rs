//! What the unit tests of several modules share.

use std::sync::{Arc, Mutex, PoisonError};

use actix::prelude::*;

/// An actor that keeps every `M` it is sent, for a test to read: a room instance hearing from
/// the store, a session hearing from the lobby.
pub struct Collect<M>(pub Arc<Mutex<Vec<M>>>);

impl<M: 'static> Actor for Collect<M> {
    type Context = Context<Self>;
}

impl<M: Message<Result = ()> + 'static> Handler<M> for Collect<M> {
    type Result = ();

    fn handle(&mut self, message: M, _: &mut Self::Context) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(message);
    }
}
