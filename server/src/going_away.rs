//! The server's going-away signal: fired once when a shutdown starts, watched by every session
//! (a connection in no room has no room to tell it that the server is going away).
//!
//! actix polls every future a context has spawned each time the context wakes up, which for a
//! session is each frame in or out. A plain shared future would lock its waker list on each of
//! those polls, from every worker thread at once; [`Watch`] leaves its waker there on the first
//! poll only, and after that reads a flag until the signal fires.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures::FutureExt;
use futures::channel::oneshot;
use futures::future::Shared;

/// The watching side; cheap to clone (two reference counts).
#[derive(Debug, Clone)]
pub struct GoingAway {
    fired: Arc<AtomicBool>,
    signal: Shared<oneshot::Receiver<()>>,
}

/// The firing side, used once.
#[derive(Debug)]
pub struct TellGoingAway {
    fired: Arc<AtomicBool>,
    signal: oneshot::Sender<()>,
}

/// A new signal, not fired.
pub fn signal() -> (TellGoingAway, GoingAway) {
    let fired = Arc::new(AtomicBool::new(false));
    let (tell, signal) = oneshot::channel();
    (
        TellGoingAway { fired: fired.clone(), signal: tell },
        GoingAway { fired, signal: signal.shared() },
    )
}

impl TellGoingAway {
    /// Fires the signal: every [`Watch`] resolves, those made later at once.
    pub fn fire(self) {
        // Before the send, so that a watch woken by it reads the flag set.
        self.fired.store(true, Ordering::SeqCst);
        let _ = self.signal.send(());
    }
}

impl GoingAway {
    /// A future that resolves when the signal fires (never, if the firing side is dropped
    /// unused).
    pub fn watch(self) -> Watch {
        Watch { going_away: self, registered: false }
    }
}

/// Resolves when the signal fires. It assumes the task polling it keeps one waker, as an actor
/// context does for its whole life: the waker left on the first poll is the one woken.
#[derive(Debug)]
pub struct Watch {
    going_away: GoingAway,
    registered: bool,
}

impl Future for Watch {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.registered && !self.going_away.fired.load(Ordering::SeqCst) {
            return Poll::Pending;
        }
        self.registered = true;
        match Pin::new(&mut self.going_away.signal).poll(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(()),
            // The firing side was dropped unused (the server ended without a shutdown).
            Poll::Ready(Err(_)) | Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use futures::task::{ArcWake, waker};

    use super::*;

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl ArcWake for Count {
        fn wake_by_ref(count: &Arc<Self>) {
            count.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A watch waits, is woken once when the signal fires and then resolves; one made after the
    /// signal fired resolves at once; one whose firing side is dropped unused never does.
    #[test]
    fn watches_resolve_when_the_signal_fires() {
        let count = Arc::new(Count::default());
        let waker = waker(count.clone());
        let mut cx = Context::from_waker(&waker);
        let (tell, going_away) = signal();
        let mut watch = going_away.clone().watch();
        assert!(Pin::new(&mut watch).poll(&mut cx).is_pending());
        assert!(Pin::new(&mut watch).poll(&mut cx).is_pending(), "polled again, still waiting");
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        tell.fire();
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "woken by the signal");
        assert!(Pin::new(&mut watch).poll(&mut cx).is_ready());
        assert!(Pin::new(&mut going_away.watch()).poll(&mut cx).is_ready(), "a late watch");

        let (unused, going_away) = signal();
        let mut watch = going_away.watch();
        assert!(Pin::new(&mut watch).poll(&mut cx).is_pending());
        drop(unused);
        assert!(Pin::new(&mut watch).poll(&mut cx).is_pending(), "never fired");
    }
}
