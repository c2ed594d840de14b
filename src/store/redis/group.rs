//! Group commit: the writes one process makes to one session are applied
//! together.
//!
//! Commits are queued by stripe (stripes are picked by id). A commit that
//! finds no writer running for its stripe becomes the writer: it writes
//! itself, in the request that made it, with no task or channel in
//! between (the common case: one browser's request at a time). Commits
//! that arrive meanwhile queue up; when the inline write ends, or if the
//! request goes away mid-write, a spawned task takes over the queue (so
//! no request that goes away can strand it). That task takes every queued
//! commit, groups them by session, and for each session reads the record
//! once, plans the commits one after another on it, in arrival order,
//! exactly as if they had run one by one, and writes the result with one
//! compare-and-set. Then it takes what queued up meanwhile, until the
//! queue is empty.
//!
//! So 64 concurrent writes to one session cost a few round trips instead
//! of 64 sequential ones, and the compare-and-set only ever races other
//! instances. A commit planned after a `destroy` or a `regenerate` of the
//! same group finds its session gone (`Vanished`), as it would have one by
//! one.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

use super::commands::Cas;
use super::record::Decoded;
use super::{RedisStore, MAX_ATTEMPTS};
use crate::domain::session::lifetime::{Lifetimes, Stamp};
use crate::domain::session::ops::{self, Plan, SessionOp};
use crate::domain::session::SessionId;
use crate::store::{Commit, Committed, StoreError};

/// Stripes of the write queues (a power of two).
pub(super) const STRIPES: usize = 1024;
/// Largest record a stripe remembers (so the copies take at most 4 MiB).
const REMEMBERED_MAX_BYTES: usize = 4096;

/// One stripe: its queue, whether a writer runs, and the record this
/// process last wrote for one of its sessions.
///
/// A blocking mutex: it guards a few field updates and is never held
/// across an `.await`.
#[derive(Default)]
pub(super) struct Stripe {
    state: Mutex<StripeState>,
}

#[derive(Default)]
struct StripeState {
    writing: bool,
    queue: Vec<Pending>,
    /// A commit written inline (one browser's requests on one instance,
    /// the common case) compares against this instead of reading first:
    /// one round trip instead of two. A stale copy costs nothing extra:
    /// the compare-and-set fails and returns what Redis holds, as the read
    /// would. A writer task's groups read first: if they used it, each
    /// would be as quick as another instance's retry and win every race
    /// while this queue refills, starving that instance.
    remembered: Option<(SessionId, Known)>,
}

/// A record a compare-and-set may start from: its bytes as Redis held
/// them (last time this process looked), and their decoding when this
/// process made it already (a read or a write through the cache, or this
/// stripe's last write), so that a write does not parse the record again.
pub(super) struct Known {
    pub raw: Vec<u8>,
    pub decoded: Option<Decoded>,
}

/// A commit as a write group plans it. One written inline borrows its id
/// and operations from the request (no copies: the common case); one
/// that waits in a queue owns them (`Queued<'static>`), since the writer
/// task that takes it outlives the borrow.
struct Queued<'a> {
    id: Cow<'a, SessionId>,
    ops: Cow<'a, [SessionOp]>,
    /// Given for a test, else made when the session moves.
    fresh_id: Option<SessionId>,
    ttl: Duration,
    max_bytes: usize,
    rotate_on: Option<Cow<'a, str>>,
    lifetimes: Lifetimes,
}

impl<'a> Queued<'a> {
    /// `commit` for the session `id`, borrowing what it can.
    fn borrowed(id: &'a SessionId, commit: Commit<'a>) -> Self {
        Self {
            id: Cow::Borrowed(id),
            ops: Cow::Borrowed(commit.ops),
            fresh_id: commit.fresh_id,
            ttl: commit.ttl,
            max_bytes: commit.max_bytes,
            rotate_on: commit.rotate_on.map(Cow::Borrowed),
            lifetimes: commit.lifetimes,
        }
    }

    /// The same commit, owning everything: for a stripe's queue.
    fn into_owned(self) -> Queued<'static> {
        Queued {
            id: Cow::Owned(self.id.into_owned()),
            ops: Cow::Owned(self.ops.into_owned()),
            fresh_id: self.fresh_id,
            ttl: self.ttl,
            max_bytes: self.max_bytes,
            rotate_on: self.rotate_on.map(|key| Cow::Owned(key.into_owned())),
            lifetimes: self.lifetimes,
        }
    }
}

/// A commit waiting in a stripe's queue, and where its result goes.
struct Pending {
    commit: Queued<'static>,
    reply: oneshot::Sender<Result<Committed, StoreError>>,
}

/// A poisoned lock only means a thread panicked mid-update; every update
/// leaves the state usable.
fn lock(stripe: &Stripe) -> MutexGuard<'_, StripeState> {
    stripe.state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn stripe_of(id: &SessionId) -> usize {
    // FNV-1a: ids are random, so this spreads them evenly.
    let hash = id.as_str().bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash as usize) & (STRIPES - 1)
}

/// What the session becomes once a group's commits are planned.
enum Fate {
    Kept,
    Written,
    Deleted,
    Moved(SessionId),
}

/// One compare-and-set round of a group.
enum Round {
    /// The results, in the group's order, and the record now stored under
    /// the session's id, if known.
    Finished(Vec<Result<Committed, StoreError>>, Option<Known>),
    /// The record changed since it was read: this is what it holds now.
    Conflict(Option<Vec<u8>>),
}

impl RedisStore {
    /// Applies `commit` to the session `current` and returns its result:
    /// written inline when no writer runs for its stripe, else queued for
    /// the writer that runs.
    pub(super) async fn enqueue(
        &self,
        current: &SessionId,
        commit: Commit<'_>,
    ) -> Result<Committed, StoreError> {
        let index = stripe_of(current);
        let queued = Queued::borrowed(current, commit);
        let stripe = &self.shared.stripes[index];
        let (queued, remembered) = {
            let mut state = lock(stripe);
            if state.writing {
                let (reply, result) = oneshot::channel();
                state.queue.push(Pending {
                    commit: queued.into_owned(),
                    reply,
                });
                (Err(result), None)
            } else {
                state.writing = true;
                (Ok(queued), state.remembered.take())
            }
        };
        let queued = match queued {
            Ok(queued) => queued,
            Err(result) => {
                return result.await.unwrap_or_else(|_| {
                    Err(StoreError::Unavailable(
                        "the session write was abandoned".into(),
                    ))
                })
            }
        };
        // This request is the stripe's writer until its own write ends;
        // whatever queued up meanwhile (or all of it, if the request goes
        // away mid-write) is handed to a writer task.
        let mut handoff = Handoff {
            store: self,
            index,
            armed: true,
        };
        // The remembered id is kept for the record this write leaves, so
        // that remembering it again copies no id.
        let (known, unused, remembered_id) = match remembered {
            Some((id, record)) if id == *current => (Some(record), None, Some(id)),
            other => (None, other, None),
        };
        // Boxed, as in `write_stripe`: the group's future is large.
        let (mut results, written) =
            Box::pin(self.write_group(current, std::slice::from_ref(&queued), known)).await;
        handoff.armed = false;
        {
            let mut state = lock(stripe);
            match written.filter(|r| r.raw.len() <= REMEMBERED_MAX_BYTES) {
                Some(record) => {
                    let id = remembered_id.unwrap_or_else(|| current.clone());
                    state.remembered = Some((id, record));
                }
                None => {
                    if let Some(unused) = unused {
                        state.remembered.get_or_insert(unused);
                    }
                }
            }
            if state.queue.is_empty() {
                state.writing = false;
            } else {
                drop(state);
                tokio::spawn(self.clone().write_stripe(index));
            }
        }
        results.pop().unwrap_or_else(|| {
            Err(StoreError::Unavailable(
                "the session write gave no result".into(),
            ))
        })
    }

    /// The writer task of one stripe, taking over from a request that
    /// wrote inline: runs until its queue is empty. (Only the first group
    /// of a writer may start from the remembered record, and that was the
    /// inline one.)
    async fn write_stripe(self, index: usize) {
        let stripe = &self.shared.stripes[index];
        // Whatever else ends this task (a panic, runtime shutdown), the
        // stripe is released and nobody waits on it forever.
        let mut release = Release {
            stripe,
            armed: true,
        };
        loop {
            let queue = {
                let mut state = lock(stripe);
                if state.queue.is_empty() {
                    state.writing = false;
                    // From here another writer may start: this one must not
                    // touch the stripe again.
                    release.armed = false;
                    return;
                }
                std::mem::take(&mut state.queue)
            };
            for (id, group) in by_session(queue) {
                let (commits, replies): (Vec<Queued<'static>>, Vec<_>) = group
                    .into_iter()
                    .map(|pending| (pending.commit, pending.reply))
                    .unzip();
                // Boxed: a group's future is large (its compare-and-set
                // and its retries), and this task's would otherwise be
                // copied whole each time it moves while being spawned.
                let (results, written) = Box::pin(self.write_group(&id, &commits, None)).await;
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
                if let Some(record) = written.filter(|r| r.raw.len() <= REMEMBERED_MAX_BYTES) {
                    lock(stripe).remembered = Some((id, record));
                }
            }
        }
    }

    /// Applies one session's group: its results, in the group's order,
    /// and the value now stored under `id`, if known.
    async fn write_group(
        &self,
        id: &SessionId,
        group: &[Queued<'_>],
        known: Option<Known>,
    ) -> (Vec<Result<Committed, StoreError>>, Option<Known>) {
        let fail = |error: &StoreError| group.iter().map(|_| Err(copy(error))).collect();
        let vanished = || group.iter().map(|_| Ok(Committed::Vanished)).collect();
        // Where the compare-and-set starts: the value this stripe wrote
        // last, or the one the cache read (the request's own load, most
        // often), or else a `GET`. A stale start costs one more round.
        let mut stored = match known.or_else(|| self.cached_record(id)) {
            Some(record) => Some(record),
            None => match self.get(&self.key(id)).await {
                Ok(value) => value.map(Known::read),
                Err(error) => return (fail(&error), None),
            },
        };
        for _ in 0..MAX_ATTEMPTS {
            let Some(expected) = stored else {
                return (vanished(), None);
            };
            match self.write_round(id, group, &expected).await {
                Ok(Round::Finished(results, written)) => return (results, written),
                Ok(Round::Conflict(now_stored)) => stored = now_stored.map(Known::read),
                Err(error) => return (fail(&error), None),
            }
        }
        let gave_up = StoreError::Unavailable(format!(
            "the session changed under {MAX_ATTEMPTS} write attempts in a row; gave up"
        ));
        (fail(&gave_up), None)
    }

    /// Plans the group on `expected`, the record last read for `id`, and
    /// writes the outcome if the record still is `expected`.
    async fn write_round(
        &self,
        id: &SessionId,
        group: &[Queued<'_>],
        expected: &Known,
    ) -> Result<Round, StoreError> {
        let Some(decoded) = expected.decoded() else {
            tracing::warn!("a Redis session record is not a JSON object; left as it is");
            let vanished = group.iter().map(|_| Ok(Committed::Vanished)).collect();
            return Ok(Round::Finished(vanished, None));
        };
        let start = Arc::new(decoded.data.text_copy());
        let mut data = Arc::clone(&start);
        let mut fate = Fate::Kept;
        let mut ttl = Duration::ZERO;
        // The stamp the written session gets: the record's, or a fresh one
        // when it moves (a login starts its lifetime again) or had none.
        let mut stamp = decoded.stamp;
        let mut results = Vec::with_capacity(group.len());
        for pending in group {
            if matches!(fate, Fate::Deleted | Fate::Moved(_)) {
                results.push(Ok(Committed::Vanished));
                continue;
            }
            let result = match ops::plan(
                Some(&data),
                &pending.ops,
                pending.max_bytes,
                pending.rotate_on.as_deref(),
            ) {
                Err(rejected) => Err(StoreError::Rejected(rejected)),
                Ok(Plan::Keep) => Ok(Committed::Unchanged),
                Ok(Plan::Delete) => {
                    fate = Fate::Deleted;
                    Ok(Committed::Destroyed)
                }
                Ok(Plan::Write {
                    data: new,
                    fresh_id,
                    remember,
                }) => {
                    data = new.clone();
                    ttl = pending.ttl;
                    let saved_as = if fresh_id {
                        let fresh = pending.fresh_id.clone().unwrap_or_else(SessionId::generate);
                        fate = Fate::Moved(fresh.clone());
                        let remembered = stamp.and_then(|s| s.remember).map(Duration::from_millis);
                        stamp = Some(super::stamp_for(
                            None,
                            pending.lifetimes,
                            remember.or(remembered),
                        ));
                        fresh
                    } else {
                        fate = Fate::Written;
                        stamp = Some(super::stamp_for(stamp, pending.lifetimes, remember));
                        id.clone()
                    };
                    Ok(Committed::Saved {
                        id: saved_as,
                        data: new,
                        remember: stamp.and_then(|s| s.remember).map(Duration::from_millis),
                    })
                }
            };
            results.push(result);
        }
        let key = self.key(id);
        let expected_raw = &expected.raw[..];
        let outcome = match fate {
            Fate::Kept => {
                let kept = Known {
                    raw: expected.raw.clone(),
                    decoded: Some(Decoded {
                        data: start,
                        ..decoded.into_owned()
                    }),
                };
                return Ok(Round::Finished(results, Some(kept)));
            }
            // Whatever the record held, the end is "deleted": no compare.
            Fate::Deleted => {
                if !self.delete(&key).await? {
                    let vanished = group.iter().map(|_| Ok(Committed::Vanished)).collect();
                    return Ok(Round::Finished(vanished, None));
                }
                return Ok(Round::Finished(results, None));
            }
            Fate::Written => {
                let stamp = stamp.unwrap_or_default();
                let cookie = decoded.cookie(expected_raw);
                let (value, millis, cookie_at) = self.encode(cookie, stamp, &data, ttl);
                let written = Decoded {
                    data: Arc::new(data.text_copy()),
                    // The stamp as a read of the record will find it.
                    stamp: Some(stamp).filter(Stamp::is_set),
                    cookie_at: Some(cookie_at),
                };
                match self
                    .set_if_unchanged(&key, expected_raw, &value, millis, id, &written)
                    .await?
                {
                    Cas::Done => {
                        let written = Known {
                            raw: value,
                            decoded: Some(written),
                        };
                        return Ok(Round::Finished(results, Some(written)));
                    }
                    changed => changed,
                }
            }
            Fate::Moved(fresh) => {
                let stamp = stamp.unwrap_or_default();
                let cookie = decoded.cookie(expected_raw);
                let (value, millis, cookie_at) = self.encode(cookie, stamp, &data, ttl);
                let written = Decoded {
                    data: Arc::new(data.text_copy()),
                    stamp: Some(stamp).filter(Stamp::is_set),
                    cookie_at: Some(cookie_at),
                };
                let keys = (key.as_str(), &fresh);
                self.move_if_unchanged(keys, expected_raw, &value, millis, &written)
                    .await?
            }
        };
        Ok(match outcome {
            Cas::Done => Round::Finished(results, None),
            Cas::Changed(now_stored) => Round::Conflict(now_stored),
        })
    }
}

impl Known {
    /// A record just read from Redis, not decoded yet.
    fn read(raw: Vec<u8>) -> Self {
        Self { raw, decoded: None }
    }

    /// Its decoding: the one known, or read now (`None` when the record
    /// is not a JSON object). The data is kept as text, so that a write
    /// of top-level keys is planned on the text (see `ops::plan`).
    fn decoded(&self) -> Option<std::borrow::Cow<'_, Decoded>> {
        match &self.decoded {
            Some(decoded) => Some(std::borrow::Cow::Borrowed(decoded)),
            None => Decoded::read(&self.raw).map(std::borrow::Cow::Owned),
        }
    }
}

/// The queue split by session, each group in arrival order, the groups in
/// order of their first commit.
fn by_session(mut queue: Vec<Pending>) -> Vec<(SessionId, Vec<Pending>)> {
    // One commit (the common case): no index to build.
    if queue.len() == 1 {
        if let Some(pending) = queue.pop() {
            return vec![(pending.commit.id.clone().into_owned(), vec![pending])];
        }
    }
    let mut groups: Vec<(SessionId, Vec<Pending>)> = Vec::new();
    let mut index: HashMap<SessionId, usize> = HashMap::new();
    for pending in queue {
        match index.get(pending.commit.id.as_ref()) {
            Some(&at) => groups[at].1.push(pending),
            None => {
                let id = pending.commit.id.clone().into_owned();
                index.insert(id.clone(), groups.len());
                groups.push((id, vec![pending]));
            }
        }
    }
    groups
}

/// The same failure for each commit of a group (`StoreError` is not
/// `Clone`: `Rejected` never comes from Redis, so it does not occur here).
fn copy(error: &StoreError) -> StoreError {
    match error {
        StoreError::Unavailable(reason) => StoreError::Unavailable(reason.clone()),
        StoreError::Rejected(rejected) => StoreError::Unavailable(rejected.to_string()),
        StoreError::Full => StoreError::Full,
    }
}

/// Releases a stripe when its writer ends other than by finding the queue
/// empty: marks it idle and fails what is still queued, so no commit waits
/// forever.
struct Release<'a> {
    stripe: &'a Stripe,
    armed: bool,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut state = lock(self.stripe);
        state.writing = false;
        for pending in state.queue.drain(..) {
            let _ = pending.reply.send(Err(StoreError::Unavailable(
                "the session writer stopped".into(),
            )));
        }
    }
}

/// Hands a stripe on when the request writing inline goes away mid-write
/// (or panics): a writer task takes over what queued up meanwhile, or,
/// with no runtime left to run one, the stripe is released as
/// [`Release`] does.
struct Handoff<'a> {
    store: &'a RedisStore,
    index: usize,
    armed: bool,
}

impl Drop for Handoff<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let stripe = &self.store.shared.stripes[self.index];
        {
            let mut state = lock(stripe);
            if state.queue.is_empty() {
                state.writing = false;
                return;
            }
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(self.store.clone().write_stripe(self.index));
            }
            Err(_) => drop(Release {
                stripe,
                armed: true,
            }),
        }
    }
}
