//! wasmer instances bound to the thread that made them, for
//! [`LocalPlugin`](crate::LocalPlugin).
//!
//! A wasmer 7 `Store` must stay on the thread that made it. The `Send`
//! service gives each instance a thread of its own and hands every call
//! to it (see the `wasmer` module). A local service's requests never leave
//! their thread, so its instances can live on that thread and run inline,
//! with no hand-off: the store is kept in a thread-local table
//! ([`BOUND`]) and the pool holds a [`Bound`] handle, the table's id and a
//! slot, which is `Send` only as a pair of numbers. Called on any other
//! thread the handle finds nothing of its own there and the call fails
//! with an error; no store ever crosses a thread (and this crate has no
//! `unsafe`).
//!
//! **Deadline.** No other thread watches the call: it is armed with the
//! instant its deadline passes (`CallWatch::arm`), and every host function
//! checks the clock; the metering middleware stops a guest that computes
//! without host calls, as on the instance threads.
//!
//! **Bodies.** A read that would wait cannot park the thread: it is the
//! thread of the connections that feed the bodies. So the service gives a
//! request whose body is still arriving to the plugin's own pool instead
//! (`Loaded::may_wait_for_body`), whose instances run on threads of their
//! own; a bound instance's calls run with `HostState::may_park` off, so a
//! read that would wait fails as in any such call (see `host::body`). The
//! deadline counts from the call's start.

use super::call_watch::CallWatch;
use super::wasmer::{WasmerInstance, WasmerModule};
use super::{Call, CallOutcome, Called, GuestCall, GuestInstance};
use crate::error::{Error, Kind};
use crate::host::{Exchange, HostState};
use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The stores of the instances bound to one thread.
struct Table {
    /// Tells this thread's table from another's: a handle's slot means
    /// something only in the table it came from.
    id: u64,
    slots: Vec<Option<WasmerInstance>>,
    /// Slots free for the next instance.
    free: Vec<usize>,
}

thread_local! {
    /// This thread's bound instances.
    static BOUND: RefCell<Table> = RefCell::new(Table::new());
}

impl Table {
    fn new() -> Table {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Table { id: NEXT.fetch_add(1, Ordering::Relaxed), slots: Vec::new(), free: Vec::new() }
    }

    fn insert(&mut self, instance: WasmerInstance) -> usize {
        match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(instance);
                slot
            }
            None => {
                self.slots.push(Some(instance));
                self.slots.len() - 1
            }
        }
    }
}

/// The `Send` side of an instance bound to one thread: where its store is.
pub(super) struct Bound {
    /// Outside a call: what the module's start left (its features).
    host: HostState,
    table: u64,
    slot: usize,
    watch: Arc<CallWatch>,
    deadline: Duration,
}

fn off_thread() -> Error {
    Error::new(Kind::Guest, "a wasmer instance bound to one thread was called on another")
}

impl WasmerModule {
    /// A new instance bound to the current thread, its start function run
    /// (armed with the deadline).
    pub(super) fn instantiate_bound(&self, host: HostState) -> Result<Box<dyn GuestInstance>, Error> {
        let shared = host.shared.clone();
        let watch = Arc::new(CallWatch::default());
        watch.arm(shared.deadline);
        let started = self.instantiate_here(host, watch.clone());
        watch.disarm();
        let mut instance = started?;
        let mut host = HostState::new(shared.clone());
        host.module_features = instance.host().module_features;
        let (table, slot) = BOUND.with_borrow_mut(|t| (t.id, t.insert(instance)));
        Ok(Box::new(Bound { host, table, slot, watch, deadline: shared.deadline }))
    }
}

impl Bound {
    /// Runs `call` inline with `exchange`.
    fn run(self: Box<Self>, call: Call, exchange: Box<Exchange>) -> CallOutcome {
        let ran = BOUND.with(|table| {
            let mut table = table.try_borrow_mut().ok()?;
            if table.id != self.table {
                return None;
            }
            let instance = table.slots.get_mut(self.slot)?.as_mut()?;
            self.watch.arm(self.deadline);
            instance.host().begin_call(exchange, false);
            let result = match call {
                Call::Request => instance.handle_request(),
                Call::Response { req_ctx, is_error } => instance.handle_response(req_ctx, is_error).map(|()| 0),
            };
            self.watch.disarm();
            Some((instance.host().end_call(), result))
        });
        let (exchange, result) = ran.ok_or_else(off_thread)?;
        Ok(Called { instance: self, exchange, result })
    }
}

impl GuestInstance for Bound {
    fn host(&mut self) -> &mut HostState {
        &mut self.host
    }

    /// Inline (see the module docs).
    fn call(self: Box<Self>, call: Call, exchange: Box<Exchange>) -> GuestCall {
        GuestCall::Ready(self.run(call, exchange))
    }
}

impl Drop for Bound {
    fn drop(&mut self) {
        // On its own thread the store goes now; elsewhere (which the local
        // service never does) it stays until its thread ends.
        let _ = BOUND.try_with(|table| {
            if let Ok(mut table) = table.try_borrow_mut()
                && table.id == self.table
                && let Some(slot) = table.slots.get_mut(self.slot)
                && slot.take().is_some()
            {
                table.free.push(self.slot);
            }
        });
    }
}
