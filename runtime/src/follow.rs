//! Topics whose history the broker keeps ([`Broker::keeps_history`]; Redis Streams in
//! `wsock-redis`): the broker numbers their messages, the same on every node, so a client
//! resumes on any node. This node follows that numbering. Its ring keeps the last messages as
//! the broker numbered them, and it asks the broker where the topic stands
//! ([`Broker::locate`]) when it starts following, when a client resumes from before what it
//! keeps, after its link to the broker dropped, and when a message skips an offset (one it
//! missed: the answer brings it). The broker answers in order with the
//! topic's messages: an answer covers every message delivered before it and none after it,
//! which is what makes the seams exact.
//!
//! A subscriber that does not resume gets a message published on this node at once, as on any
//! topic; a resumable one gets it as the broker numbered it, when it comes back. What the
//! broker refuses reaches this node's subscribers without a number (outside the history).
//!
//! Everything here runs under the topic's ring lock, with its subscribers read-locked.

use std::sync::Arc;

use tokio::sync::oneshot;

use crate::codec::{Outgoing, Published};
use crate::history::{
    Follow, FollowState as State, Held, Kind, Locate, NotRecovered, Request, Ring, Subscribed,
};
use crate::mailbox::Mailbox;
use crate::message::Message;

/// What a following ring asks of the broker (`Broker`'s, for `topics`).
pub(crate) trait Asker {
    /// Receive `topic`'s messages from now on.
    fn subscribe(&self, topic: &str);
    /// Where `topic` stands; the answer comes to the sink, in order with its messages.
    fn locate(&self, topic: &str, locate: Locate);
}

/// The most requests one topic has waiting for the broker's answers: past it, a resuming
/// client waits for the last one's answer.
const MAX_REQUESTS: usize = 256;
/// The most messages published here except a connection that wait for their numbered copy:
/// past it, the oldest is forgotten (that connection gets its own message back).
const MAX_EXCEPTS: usize = 1024;

/// Where a message came from.
#[derive(Clone, Copy)]
pub(crate) enum Origin {
    /// Another node.
    Remote,
    /// This node, published except the connection with this token (0: none); its subscribers
    /// that do not resume got it when it was published.
    Own { except: u64 },
}

/// A broker's answer, its messages opened.
pub(crate) struct Answer {
    pub(crate) epoch: String,
    pub(crate) last: u64,
    pub(crate) messages: Vec<(u64, Message, Origin)>,
}

/// The topic's name and its broker, to ask.
pub(crate) struct Link<'a> {
    pub(crate) topic: &'a str,
    pub(crate) broker: &'a dyn Asker,
}

type Slots = [Option<Arc<Mailbox>>];

fn follow(ring: &mut Ring) -> &mut Follow {
    ring.follow
        .as_mut()
        .expect("a ring that follows the broker")
}

impl Link<'_> {
    fn ask(&self, ring: &mut Ring, request: Request, after: Option<(String, u64)>, create: bool) {
        self.ask_replacing(ring, request, after, create, None);
    }

    fn ask_position(&self, ring: &mut Ring, replace: Option<String>) {
        self.ask_replacing(ring, Kind::Position.into(), None, true, replace);
    }

    fn ask_replacing(
        &self,
        ring: &mut Ring,
        request: Request,
        after: Option<(String, u64)>,
        create: bool,
        replace: Option<String>,
    ) {
        let mut history = ring.settings();
        if let Kind::Refill = request.kind {
            // This node catching up, not a client's replay: as far back as the history goes.
            history = history.max_replay(history.message_limit().max(history.replay_limit()));
        }
        follow(ring).requests.push_back(request);
        // The topic's messages first: the answer covers what came before it only if what
        // comes after it reaches this node.
        self.broker.subscribe(self.topic);
        self.broker.locate(
            self.topic,
            Locate {
                after,
                create,
                replace,
                history,
            },
        );
    }
}

/// A message published on this node: its subscribers that do not resume get it now. Returns
/// the token that names `except` in what goes to the broker (0: none).
pub(crate) fn published(
    ring: &mut Ring,
    slots: &Slots,
    message: &Message,
    except: Option<&Arc<Mailbox>>,
) -> u64 {
    fan(slots, except, |mailbox| mailbox.resume().is_none(), message);
    let Some(except) = except else {
        return 0;
    };
    let follow = follow(ring);
    follow.next_token += 1;
    if follow.excepts.len() == MAX_EXCEPTS {
        follow.excepts.pop_front();
    }
    follow
        .excepts
        .push_back((follow.next_token, Arc::downgrade(except)));
    follow.next_token
}

/// The broker refused a message published here: its resumable subscribers get it now, without
/// a number (its numbered copy will not come).
pub(crate) fn refused(ring: &mut Ring, slots: &Slots, message: &Message, token: u64) {
    let except = take_except(ring, token);
    fan(
        slots,
        except.as_ref(),
        |mailbox| mailbox.resume().is_some(),
        message,
    );
}

/// A message as the broker numbered it.
///
/// One past the next offset (a message of the same epoch this node did not get) is a gap:
/// the ring asks the broker for what came after its last message, as after a lost link, and
/// holds everything until the answer, which brings the missing ones, this one and whatever
/// came meanwhile, in order. Subscribers are told `behind` only when the broker no longer
/// holds them.
pub(crate) fn numbered(
    link: &Link<'_>,
    ring: &mut Ring,
    slots: &Slots,
    (epoch, offset): (&str, u64),
    message: Message,
    origin: Origin,
) {
    let state = follow(ring).state;
    if state == State::Refilling
        || (state == State::Known && epoch == ring.epoch() && offset > ring.last() + 1)
    {
        // The answer brings it (and takes the connection it was published except then).
        if state == State::Known {
            refill(link, ring);
        }
        hold(ring, epoch, offset, message, origin);
        return;
    }
    let except = match origin {
        Origin::Own { except } => take_except(ring, except),
        Origin::Remote => None,
    };
    let plain_too = matches!(origin, Origin::Remote);
    if let State::Unknown { .. } = state {
        // Where it stands is not known yet: as a plain topic (a resumable subscriber learns
        // its position when the answer comes, and this is before it).
        let wanted = |mailbox: &Mailbox| plain_too || mailbox.resume().is_some();
        return fan(slots, except.as_ref(), wanted, &message);
    }
    if epoch == ring.epoch() && offset <= ring.last() {
        return; // came already
    }
    if epoch != ring.epoch() {
        // The broker's history went on without this node's (it lost it and started again):
        // resumable subscribers are told, at the new position.
        ring.reset(epoch, offset - 1);
        tell(ring, slots, Subscribed::NotRecovered(NotRecovered::Epoch));
    }
    let enveloped = ring.push(&message);
    let mut plain = None;
    for mailbox in slots.iter().flatten() {
        let resumes = mailbox.resume().is_some();
        if except
            .as_ref()
            .is_some_and(|except| Arc::ptr_eq(except, mailbox))
        {
            if resumes {
                mailbox.push(Outgoing::Message(ring.skipped()));
            }
            continue;
        }
        if resumes {
            mailbox.push(Outgoing::Published(Arc::clone(&enveloped)));
        } else if plain_too {
            let plain = plain.get_or_insert_with(|| Arc::new(Published::new(message.clone())));
            mailbox.push(Outgoing::Published(Arc::clone(plain)));
        }
    }
}

/// A message from the broker without a number, on a topic this node follows: the broker
/// keeps no history of it any more (expired, flushed), or it was published without one (by a
/// node that did not know yet that the topic is kept). Either way the history does not hold
/// it: it starts again under a new epoch, so that a client that was away resumes from there
/// knowing it missed something.
pub(crate) fn unnumbered(
    link: &Link<'_>,
    ring: &mut Ring,
    slots: &Slots,
    message: &Message,
    origin: Origin,
) {
    let except = match origin {
        Origin::Own { except } => take_except(ring, except),
        Origin::Remote => None,
    };
    let plain_too = matches!(origin, Origin::Remote);
    fan(
        slots,
        except.as_ref(),
        |mailbox| plain_too || mailbox.resume().is_some(),
        message,
    );
    if let State::Known | State::Refilling = follow(ring).state {
        follow(ring).state = State::Unknown { absent: false };
        follow(ring).held.clear();
        let replace = Some(ring.epoch().to_owned());
        link.ask_position(ring, replace);
    }
}

/// The broker's answer to the oldest request.
pub(crate) fn located(link: &Link<'_>, ring: &mut Ring, slots: &Slots, answer: Option<Answer>) {
    let request = follow(ring).requests.pop_front();
    let refill = request
        .as_ref()
        .is_some_and(|request| matches!(request.kind, Kind::Refill));
    // The handshakes waiting for it go on once this returns (and the answer is in the ring).
    for told in request.into_iter().flat_map(|request| request.told) {
        let _ = told.send(());
    }
    let Some(Answer {
        epoch,
        last,
        messages,
    }) = answer
    else {
        if refill {
            // Not answered: where the topic stands is not known any more.
            follow(ring).state = State::Unknown { absent: false };
            follow(ring).held.clear();
            ask_position(link, ring, slots);
        }
        return;
    };
    let state = follow(ring).state;
    if epoch.is_empty() {
        // The broker keeps no history of the topic.
        follow(ring).state = State::Unknown { absent: true };
        if state != (State::Unknown { absent: true }) {
            ask_position(link, ring, slots);
        }
        return;
    }
    match state {
        State::Unknown { .. } => {
            ring.reset(&epoch, last);
            fill_back(ring, &messages);
            follow(ring).state = State::Known;
            tell(ring, slots, Subscribed::Live);
        }
        State::Refilling if refill => {
            follow(ring).state = State::Known;
            let from = ring.last() + 1;
            let covered = epoch == ring.epoch()
                && (last < from || messages.iter().any(|(offset, ..)| *offset == from))
                && contiguous(&messages, from, last);
            if covered {
                // (What was held came before the answer: the answer has it.)
                follow(ring).held.clear();
                fill_back(ring, &messages);
                for (offset, message, origin) in messages.into_iter().filter(|m| m.0 >= from) {
                    numbered(link, ring, slots, (&epoch, offset), message, origin);
                }
            } else {
                // The broker no longer holds what is missing: told, from where what came
                // meanwhile runs on to the broker's last (which goes on, rather than lost).
                let why = match epoch == ring.epoch() {
                    true => NotRecovered::Behind,
                    false => NotRecovered::Epoch,
                };
                let held = held_up_to(ring, &epoch, last);
                let start = held.first().map_or(last, |(offset, ..)| offset - 1);
                ring.reset(&epoch, start);
                fill_back(ring, &messages);
                tell(ring, slots, Subscribed::NotRecovered(why));
                for (offset, message, origin) in held {
                    numbered(link, ring, slots, (&epoch, offset), message, origin);
                }
            }
        }
        State::Known | State::Refilling => {
            if epoch == ring.epoch() {
                fill_back(ring, &messages);
            } else if state == State::Known {
                ring.reset(&epoch, last);
                fill_back(ring, &messages);
                tell(ring, slots, Subscribed::NotRecovered(NotRecovered::Epoch));
            }
        }
    }
}

/// Whether `messages` hold every offset from `from` to `last`.
fn contiguous(messages: &[(u64, Message, Origin)], from: u64, last: u64) -> bool {
    let mut next = from;
    for (offset, ..) in messages {
        if *offset == next {
            next += 1;
        }
    }
    next > last
}

/// Keeps, oldest last, the messages of `messages` just before the oldest kept, as far as
/// they run on without a hole and the history has room.
fn fill_back(ring: &mut Ring, messages: &[(u64, Message, Origin)]) {
    for (offset, message, _) in messages.iter().rev() {
        if *offset >= ring.first() {
            continue;
        }
        if *offset + 1 != ring.first() || !ring.prepend(message) {
            return;
        }
    }
}

/// A resumable connection subscribes: what it is told and replayed, and what it returns.
pub(crate) fn subscribe(
    link: &Link<'_>,
    ring: &mut Ring,
    mailbox: &Arc<Mailbox>,
    position: Option<(&str, u64)>,
) -> Subscribed {
    let state = follow(ring).state;
    if state == State::Known {
        if let Some((epoch, offset)) = position
            && epoch == ring.epoch()
            && offset > ring.last()
            && follow(ring)
                .requests
                .iter()
                .any(|request| matches!(request.kind, Kind::Prefetch { .. }))
        {
            // This node is behind the client (which had it from a faster one), and the answer
            // that would say how far is late: told so, at its own position, so that what this
            // node delivers next and the client has already is dropped, not shown twice.
            let subscribed = Subscribed::NotRecovered(NotRecovered::Unavailable);
            mailbox.push(Outgoing::Message(ring.notice_at(subscribed, offset)));
            return subscribed;
        }
        return ring.resume(mailbox, position);
    }
    let absent = state == (State::Unknown { absent: true });
    let subscribed = match position {
        None => Subscribed::Live,
        Some(_) if absent => Subscribed::NotRecovered(NotRecovered::Epoch),
        // Not known here yet, or perhaps stale (the broker may have lost the history while
        // the link was down).
        Some(_) => Subscribed::NotRecovered(NotRecovered::Unavailable),
    };
    if state == State::Refilling {
        // Told its position now: the refill goes on from there, or tells it the history
        // changed.
        mailbox.push(Outgoing::Message(ring.notice(subscribed)));
        return subscribed;
    }
    // Its position comes with the answer (`tell`); a client that gave one is told now that it
    // was not recovered.
    if position.is_some() {
        mailbox.push(Outgoing::Message(ring.notice(subscribed)));
    }
    if absent || !asked(ring) {
        link.ask_position(ring, None);
        follow(ring).state = State::Unknown { absent: false };
    }
    subscribed
}

/// Asks where the topic stands, if anyone here is there to be told and nothing is asked yet.
fn ask_position(link: &Link<'_>, ring: &mut Ring, slots: &Slots) {
    if !asked(ring)
        && slots
            .iter()
            .flatten()
            .any(|mailbox| mailbox.resume().is_some())
    {
        link.ask_position(ring, None);
    }
}

/// Whether where the topic stands was asked and not answered yet.
fn asked(ring: &mut Ring) -> bool {
    follow(ring)
        .requests
        .iter()
        .any(|request| matches!(request.kind, Kind::Position | Kind::Refill))
}

/// A client resumes at `(epoch, offset)`: asks the broker for what it missed unless this node
/// keeps it (or it cannot be recovered anyway). The receiver is told once the answer is in.
pub(crate) fn prefetch(
    link: &Link<'_>,
    ring: &mut Ring,
    (epoch, offset): (&str, u64),
) -> Option<oneshot::Receiver<()>> {
    let cap = ring.settings().replay_limit() as u64;
    let state = follow(ring).state;
    let here = match state {
        // A client past this node's last message got it from a node that is ahead: the answer
        // comes once this one caught up (past the broker's last too, it is refused then).
        State::Known if offset > ring.last() => false,
        State::Known => {
            epoch != ring.epoch()
                || offset == ring.last()
                || offset + 1 >= ring.first()
                || ring.last() - offset > cap
        }
        // The answer comes after the refill's.
        State::Unknown { .. } | State::Refilling => false,
    };
    if here {
        return None;
    }
    let (done, told) = oneshot::channel();
    let requests = &mut follow(ring).requests;
    // An answer on its way that brings all this client missed (it asked from as far back, in
    // the same epoch), or past the bound the last one: waits for it rather than asking again.
    // (1,000 clients back at once ask once.)
    let covering = requests.iter_mut().find(|request| {
        matches!(&request.kind, Kind::Prefetch { epoch: theirs, after } if theirs == epoch && *after <= offset)
    });
    if let Some(request) = covering {
        request.told.push(done);
        return Some(told);
    }
    if requests.len() >= MAX_REQUESTS
        && let Some(last) = requests.back_mut()
    {
        last.told.push(done);
        return Some(told);
    }
    let request = Request {
        kind: Kind::Prefetch {
            epoch: epoch.to_owned(),
            after: offset,
        },
        told: vec![done],
    };
    link.ask(ring, request, Some((epoch.to_owned(), offset)), false);
    Some(told)
}

/// The broker's link dropped: messages may have been missed. A ring that knew where it stood
/// asks for what came since; one that did not asks again (its request may be lost).
pub(crate) fn lost(link: &Link<'_>, ring: &mut Ring, slots: &Slots) {
    match follow(ring).state {
        State::Known => refill(link, ring),
        State::Refilling => {}
        State::Unknown { .. } => ask_position(link, ring, slots),
    }
}

/// Asks the broker for what came after the ring's last message; what comes meanwhile is in
/// the answer, and held until it comes.
fn refill(link: &Link<'_>, ring: &mut Ring) {
    follow(ring).state = State::Refilling;
    follow(ring).held.clear();
    let after = Some((ring.epoch().to_owned(), ring.last()));
    link.ask(ring, Kind::Refill.into(), after, true);
}

/// Keeps a message that came while refilling, the oldest going past the history's length.
fn hold(ring: &mut Ring, epoch: &str, offset: u64, message: Message, origin: Origin) {
    let limit = ring.settings().message_limit();
    let held = &mut follow(ring).held;
    if held.len() >= limit {
        held.pop_front();
    }
    held.push_back(Held {
        epoch: epoch.to_owned(),
        offset,
        message,
        own: match origin {
            Origin::Own { except } => Some(except),
            Origin::Remote => None,
        },
    });
}

/// The messages held while refilling that run on without a hole up to `last` under `epoch`
/// (the broker's position in its answer), oldest first; none if they do not reach it.
fn held_up_to(ring: &mut Ring, epoch: &str, last: u64) -> Vec<(u64, Message, Origin)> {
    let held = std::mem::take(&mut follow(ring).held);
    let mut run: Vec<(u64, Message, Origin)> = Vec::new();
    for held in held {
        if held.epoch != epoch || run.last().is_some_and(|(at, ..)| *at + 1 != held.offset) {
            run.clear();
        }
        if held.epoch != epoch {
            continue;
        }
        let origin = match held.own {
            Some(except) => Origin::Own { except },
            None => Origin::Remote,
        };
        run.push((held.offset, held.message, origin));
    }
    match run.last() {
        Some((at, ..)) if *at == last => run,
        _ => Vec::new(),
    }
}

/// Tells every resumable subscriber where the topic stands now.
fn tell(ring: &Ring, slots: &Slots, subscribed: Subscribed) {
    let mut notice = None;
    for mailbox in slots.iter().flatten() {
        if mailbox.resume().is_some() {
            let notice = notice.get_or_insert_with(|| ring.notice(subscribed));
            mailbox.push(Outgoing::Message(notice.clone()));
        }
    }
}

/// The connection that a message published here was published except, by its token.
fn take_except(ring: &mut Ring, token: u64) -> Option<Arc<Mailbox>> {
    if token == 0 {
        return None;
    }
    let excepts = &mut follow(ring).excepts;
    // Older ones never came back (refused, or lost with a pipeline): forgotten.
    while excepts.front().is_some_and(|(older, _)| *older < token) {
        excepts.pop_front();
    }
    match excepts.front() {
        Some((found, _)) if *found == token => excepts.pop_front()?.1.upgrade(),
        _ => None,
    }
}

/// Queues `message`, shared, for the subscribers `wanted` says, but `except`.
fn fan(
    slots: &Slots,
    except: Option<&Arc<Mailbox>>,
    wanted: impl Fn(&Mailbox) -> bool,
    message: &Message,
) {
    let mut shared = None;
    for mailbox in slots.iter().flatten() {
        if !wanted(mailbox) || except.is_some_and(|except| Arc::ptr_eq(except, mailbox)) {
            continue;
        }
        let shared = shared.get_or_insert_with(|| Arc::new(Published::new(message.clone())));
        mailbox.push(Outgoing::Published(Arc::clone(shared)));
    }
}
