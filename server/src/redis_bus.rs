//! One pub/sub connection per server for every room it follows (part of the Redis engine,
//! `--redis`): a connection per room would cost a socket per open room on the server and on
//! Redis (10,000 rooms, 10,000 connections; Redis accepts 10,000 clients by default).
//!
//! A task owns the connection. Rooms ask to [`Bus::listen`] to a room; the task subscribes to
//! the room's two channels and, once Redis confirmed, says [`Heard::Subscribed`]: the room's
//! follower then reads the head, so nothing published after the subscription is missed.
//! Publications go to the room they name. When the connection drops (Redis restarted, the
//! connection killed, the output buffer limit), the task connects again, subscribes to every
//! room again and says `Subscribed` to each, which then reads its head and fills its hole
//! from the stream. Rooms that stopped listening are unsubscribed on the next sweep.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::redis_keys::{COMMAND_TIMEOUT, Published, channel, events_channel};

/// What a room's follower hears from the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// Subscribed (again): publications from now on arrive; read the head for what came
    /// before.
    Subscribed,
    /// A message's publication.
    Published(Published),
    /// An event (join, leave, typing), as published.
    Event(String),
}

/// How often rooms that stopped listening are unsubscribed.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// How long the bus waits before connecting again after a failure.
const RECONNECT_DELAY: Duration = Duration::from_millis(200);

/// A handle to the server's pub/sub task; cheap to clone.
#[derive(Clone)]
pub struct Bus {
    requests: UnboundedSender<(String, UnboundedSender<Heard>)>,
}

impl Bus {
    /// Starts the task on the current tokio runtime; it ends once every handle is gone.
    pub fn start(client: redis::Client) -> Bus {
        let (requests, incoming) = unbounded_channel();
        tokio::spawn(run(client, incoming));
        Bus { requests }
    }

    /// Listens to `room`: its publications and events, each preceded by `Subscribed` once the
    /// subscription (and every later one) is confirmed. Stops when the receiver is dropped.
    pub fn listen(&self, room: &str) -> UnboundedReceiver<Heard> {
        let (sink, heard) = unbounded_channel();
        let _ = self.requests.send((room.to_owned(), sink));
        heard
    }
}

/// Who listens to which room, and which room each channel belongs to.
#[derive(Default)]
struct Rooms {
    listeners: HashMap<String, Vec<UnboundedSender<Heard>>>,
    channels: HashMap<String, (String, bool)>,
}

impl Rooms {
    fn add(&mut self, room: &str, listener: UnboundedSender<Heard>) {
        self.channels.insert(channel(room), (room.to_owned(), false));
        self.channels.insert(events_channel(room), (room.to_owned(), true));
        self.listeners.entry(room.to_owned()).or_default().push(listener);
    }

    /// Forgets listeners that are gone; the channels of rooms nobody listens to any more.
    fn sweep(&mut self) -> Vec<String> {
        let mut quiet = Vec::new();
        self.listeners.retain(|room, listeners| {
            listeners.retain(|listener| !listener.is_closed());
            if listeners.is_empty() {
                quiet.push(room.clone());
            }
            !listeners.is_empty()
        });
        let mut channels = Vec::new();
        for room in quiet {
            for name in [channel(&room), events_channel(&room)] {
                self.channels.remove(&name);
                channels.push(name);
            }
        }
        channels
    }

    /// Hands `heard` to the listeners of `room`.
    fn tell(&self, room: &str, heard: &Heard) {
        for listener in self.listeners.get(room).into_iter().flatten() {
            let _ = listener.send(heard.clone());
        }
    }

    fn all_channels(&self) -> Vec<String> {
        self.channels.keys().cloned().collect()
    }
}

async fn run(
    client: redis::Client,
    mut requests: UnboundedReceiver<(String, UnboundedSender<Heard>)>,
) {
    let mut rooms = Rooms::default();
    loop {
        let connect = tokio::time::timeout(COMMAND_TIMEOUT, client.get_async_pubsub()).await;
        let Ok(Ok(pubsub)) = connect else {
            // Requests that came meanwhile are kept for the next connection.
            while let Ok((room, listener)) = requests.try_recv() {
                rooms.add(&room, listener);
            }
            if requests.is_closed() && rooms.listeners.is_empty() {
                return;
            }
            tokio::time::sleep(RECONNECT_DELAY).await;
            continue;
        };
        let (mut sink, mut stream) = pubsub.split();
        rooms.sweep();
        let channels = rooms.all_channels();
        if !channels.is_empty() {
            if !subscribed(&mut sink, &channels).await {
                tokio::time::sleep(RECONNECT_DELAY).await;
                continue;
            }
            for room in rooms.listeners.keys() {
                rooms.tell(room, &Heard::Subscribed);
            }
        }
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        loop {
            tokio::select! {
                message = stream.next() => {
                    // The connection dropped: connect and subscribe again.
                    let Some(message) = message else { break };
                    let name = message.get_channel_name();
                    let Some((room, event)) = rooms.channels.get(name) else { continue };
                    let Ok(payload) = message.get_payload::<String>() else { continue };
                    let heard = if *event {
                        Heard::Event(payload)
                    } else {
                        match Published::parse(&payload) {
                            Some(published) => Heard::Published(published),
                            None => continue,
                        }
                    };
                    rooms.tell(room, &heard);
                }
                request = requests.recv() => {
                    let Some((room, listener)) = request else { return };
                    let known = rooms.listeners.contains_key(&room);
                    rooms.add(&room, listener.clone());
                    if !known && !subscribed(&mut sink, &[channel(&room), events_channel(&room)]).await {
                        break;
                    }
                    let _ = listener.send(Heard::Subscribed);
                }
                _ = sweep.tick() => {
                    let quiet = rooms.sweep();
                    if !quiet.is_empty() {
                        let unsubscribe = tokio::time::timeout(COMMAND_TIMEOUT, sink.unsubscribe(&quiet));
                        if !matches!(unsubscribe.await, Ok(Ok(()))) {
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// Subscribes to `channels` and waits for Redis to confirm; `false` if it did not.
async fn subscribed(sink: &mut redis::aio::PubSubSink, channels: &[String]) -> bool {
    matches!(tokio::time::timeout(COMMAND_TIMEOUT, sink.subscribe(channels)).await, Ok(Ok(())))
}
