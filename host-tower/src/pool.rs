//! One loaded module and its bounded pool of instances.

use crate::engine::{Call, CallOutcome, Called, CompiledModule, GuestCall, GuestInstance};
use crate::error::{Error, Kind};
use crate::host::{BodyState, Exchange, HostState, Shared};
use crate::metrics::{CallSampler, Counters, Stage};
use crate::plugin::{Isolation, PluginBuilder};
use http_wasm_abi::{Features, HostFunction};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A compiled module with its instances: what a [`Plugin`](crate::Plugin)
/// serves requests with until a reload replaces it.
pub(crate) struct Loaded {
    shared: Arc<Shared>,
    module: Arc<dyn CompiledModule>,
    pub(crate) imports: Vec<HostFunction>,
    pub(crate) module_features: Features,
    /// `handle_response` may read request headers (it reaches a function
    /// that does, see `module::reach`), so they are kept after forwarding.
    reads_headers: bool,
    /// The same for the request URI (`get_uri`, and header reads, which
    /// answer `host` from the URI's authority on HTTP/2).
    reads_uri: bool,
    permits: Arc<Semaphore>,
    pool_wait: Duration,
    isolation: Isolation,
    /// One guest call in this many is timed for the metrics.
    guest_time_sampling: u32,
    idle: Mutex<Idle>,
    counters: Arc<Counters>,
    /// The instances are for calls on one thread only (a
    /// [`LocalPlugin`](crate::LocalPlugin)'s replica; see
    /// `CompiledModule::instantiate_bound`).
    bound: bool,
}

impl Loaded {
    /// Compiles, checks and starts a first instance of `wasm`.
    pub(crate) fn load(options: &PluginBuilder, wasm: &[u8], counters: Arc<Counters>) -> Result<Loaded, Error> {
        options.check()?;
        let shared = Arc::new(Shared {
            name: options.name.clone(),
            config: options.config.clone(),
            log_level: options.log_level,
            allowed: options.features,
            body_limit: options.body_limit,
            body_timeout: options.body_timeout,
            header_limit: options.header_limit,
            env: options.env.clone(),
            deadline: options.deadline,
            memory_limit: options.memory_limit,
            table_limit: options.table_limit,
        });
        let analysis = crate::module::Analysis::read(wasm)?;
        let module = crate::engine::compile(
            options.engine,
            wasm,
            &analysis,
            options.cache_dir.as_deref(),
            options.memory_limit,
            options.table_limit,
            options.isolation,
        )?;
        let imports = module.checked().host_imports.clone();
        let mut first = Pooled::start(&*module, false, &shared, &counters, options.guest_time_sampling)?;
        let module_features = first.instance.host().module_features;
        let reach = &analysis.reach;
        let reads_headers =
            reach.may_call(HostFunction::GetHeaderNames) || reach.may_call(HostFunction::GetHeaderValues);
        let reads_uri = reads_headers || reach.may_call(HostFunction::GetUri);
        Ok(Loaded {
            shared,
            module,
            reads_headers,
            reads_uri,
            imports,
            module_features,
            permits: Arc::new(Semaphore::new(options.pool_size)),
            pool_wait: options.pool_wait,
            isolation: options.isolation,
            guest_time_sampling: options.guest_time_sampling,
            idle: Mutex::new(Idle { instances: vec![first], exchanges: Vec::new() }),
            counters,
            bound: false,
        })
    }

    /// The same module with a pool of its own, of `pool_size` instances
    /// bound to the calling thread (started as requests need them), its
    /// counters shared: a [`LocalPlugin`](crate::LocalPlugin)'s replica.
    pub(crate) fn replica(&self, pool_size: usize) -> Loaded {
        Loaded {
            shared: self.shared.clone(),
            module: self.module.clone(),
            imports: self.imports.clone(),
            module_features: self.module_features,
            reads_headers: self.reads_headers,
            reads_uri: self.reads_uri,
            permits: Arc::new(Semaphore::new(pool_size)),
            pool_wait: self.pool_wait,
            isolation: self.isolation,
            guest_time_sampling: self.guest_time_sampling,
            idle: Mutex::new(Idle { instances: Vec::new(), exchanges: Vec::new() }),
            counters: self.counters.clone(),
            bound: true,
        }
    }
}

impl Loaded {
    /// The most bytes of one body buffered for the guest.
    pub(crate) fn body_limit(&self) -> usize {
        self.shared.body_limit
    }

    /// True when a call on these instances may wait for a body still
    /// arriving: false for a replica whose backend runs its thread-bound
    /// instances inline (see `CompiledModule::bound_may_wait`).
    pub(crate) fn may_wait_for_body(&self) -> bool {
        !self.bound || self.module.bound_may_wait()
    }

    pub(crate) fn body_timeout(&self) -> Duration {
        self.shared.body_timeout
    }
}

/// What waits between requests: instances, and the boxes of exchanges
/// past requests left, for the next ones to fill in place (a box per
/// lease out at once at most, allocated the first time).
struct Idle {
    instances: Vec<Pooled>,
    #[expect(clippy::vec_box, reason = "the boxes themselves are what is kept: each goes out and back whole")]
    exchanges: Vec<Box<Exchange>>,
}

/// A live instance and its record.
struct Pooled {
    instance: Box<dyn GuestInstance>,
    record: Record,
}

/// What the pool keeps of one instance besides the instance: how many
/// requests it served, which of its calls are timed, and its place among
/// the live ones. It stays with the lease while a guest call has the
/// instance.
struct Record {
    served: u64,
    sampler: CallSampler,
    _alive: Alive,
}

/// Counts an instance as alive until it is dropped.
struct Alive(Arc<Counters>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.instance_dropped();
    }
}

impl Pooled {
    fn start(
        module: &dyn CompiledModule,
        bound: bool,
        shared: &Arc<Shared>,
        counters: &Arc<Counters>,
        guest_time_sampling: u32,
    ) -> Result<Pooled, Error> {
        let host = HostState::new(shared.clone());
        let instance = if bound { module.instantiate_bound(host)? } else { module.instantiate(host)? };
        counters.instance_started();
        let record =
            Record { served: 0, sampler: CallSampler::new(guest_time_sampling), _alive: Alive(counters.clone()) };
        Ok(Pooled { instance, record })
    }
}

/// An instance pinned to one request; back to the pool on drop unless
/// discarded or due for replacement by the isolation policy.
pub(crate) struct Lease {
    /// The instance: out while a guest call has it, `None` once discarded.
    instance: Option<Box<dyn GuestInstance>>,
    /// Its record, `None` once discarded.
    record: Option<Record>,
    /// An exchange box for the request, back to the pool with the lease.
    exchange: Option<Box<Exchange>>,
    loaded: Arc<Loaded>,
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    /// Takes an instance of `loaded`, waiting while all are busy.
    pub(crate) async fn acquire(loaded: Arc<Loaded>) -> Result<Lease, Error> {
        // Fast path: a free instance, no timer involved.
        if let Ok(permit) = loaded.permits.clone().try_acquire_owned() {
            return Lease::take(loaded, permit);
        }
        loaded.counters.pool_waited();
        match tokio::time::timeout(loaded.pool_wait, loaded.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Lease::take(loaded, permit),
            Ok(Err(_)) => Err(Error::new(Kind::PoolTimeout, "instance pool closed")),
            Err(_) => Err(Error::new(Kind::PoolTimeout, format!("no instance free within {:?}", loaded.pool_wait))),
        }
    }

    /// Takes an instance of `loaded` if one is free now; `Err` with
    /// `loaded` back when all are busy (nothing counted: [`Lease::acquire`]
    /// then waits).
    pub(crate) fn try_acquire(loaded: Arc<Loaded>) -> Result<Result<Lease, Error>, Arc<Loaded>> {
        match loaded.permits.clone().try_acquire_owned() {
            Ok(permit) => Ok(Lease::take(loaded, permit)),
            Err(_) => Err(loaded),
        }
    }

    /// An idle instance, or a new one, under `permit`.
    fn take(loaded: Arc<Loaded>, permit: OwnedSemaphorePermit) -> Result<Lease, Error> {
        let (idle, exchange) = {
            let mut idle = loaded.idle.lock().unwrap_or_else(|e| e.into_inner());
            (idle.instances.pop(), idle.exchanges.pop())
        };
        let Pooled { instance, record } = match idle {
            Some(i) => i,
            None => Pooled::start(
                &*loaded.module,
                loaded.bound,
                &loaded.shared,
                &loaded.counters,
                loaded.guest_time_sampling,
            )?,
        };
        loaded.counters.lease_taken();
        Ok(Lease { instance: Some(instance), record: Some(record), exchange, loaded, _permit: permit })
    }

    /// The exchange of `request` with the module's features, in the box a
    /// past request left when there is one; `req_body` `None` for a
    /// request without a body.
    pub(crate) fn exchange(
        &mut self,
        request: http::request::Parts,
        req_body: Option<BodyState>,
        source_addr: Option<std::net::SocketAddr>,
    ) -> Box<Exchange> {
        let features = self.loaded.module_features;
        match self.exchange.take() {
            Some(mut exchange) => {
                exchange.begin(request, req_body, features, source_addr);
                exchange
            }
            None => Box::new(Exchange::new(request, req_body.unwrap_or_default(), features, source_addr)),
        }
    }

    /// Keeps the box of a finished exchange for a later request, what the
    /// request left in it dropped.
    pub(crate) fn recycle(&mut self, mut exchange: Box<Exchange>) {
        exchange.end();
        self.exchange = Some(exchange);
    }

    /// Runs `call` with `exchange` on the instance, its time recorded if
    /// sampled: the lease comes back with the exchange and the result.
    pub(crate) fn call(mut self, call: Call, exchange: Box<Exchange>) -> LeaseCalled {
        let stage = match call {
            Call::Request => Stage::Request,
            Call::Response { .. } => Stage::Response,
        };
        let timed = self.start_timing();
        let instance = self.instance.take().expect("instance present until drop or discard");
        match instance.call(call, exchange) {
            GuestCall::Ready(outcome) => LeaseCalled::Ready(self.called(stage, timed, outcome)),
            GuestCall::Waiting(waiting) => LeaseCalled::Waiting(LeaseCall { waiting, lease: Some(self), stage, timed }),
        }
    }

    /// The lease given its instance back, the call's time recorded; when
    /// the backend lost the instance, the error (the lease dropped without it).
    fn called(mut self, stage: Stage, timed: Option<Instant>, outcome: CallOutcome) -> LeaseOutcome {
        self.finish_timing(stage, timed);
        let Called { instance, exchange, result } = outcome?;
        self.instance = Some(instance);
        Ok((self, exchange, result))
    }

    /// The start of a guest call when this one is timed
    /// ([`PluginBuilder::guest_time_sampling`]).
    fn start_timing(&mut self) -> Option<Instant> {
        let one_in = self.loaded.guest_time_sampling;
        let record = self.record.as_mut()?;
        record.sampler.pick(one_in).then(Instant::now)
    }

    /// Records a timed call's duration.
    fn finish_timing(&self, stage: Stage, started: Option<Instant>) {
        if let Some(started) = started {
            self.loaded.counters.guest_call(stage, started.elapsed());
        }
    }

    /// Drops the instance instead of returning it (after any trap).
    pub(crate) fn discard(&mut self) {
        self.instance = None;
        self.record = None;
    }

    /// The most bytes of one body buffered for the guest.
    pub(crate) fn body_limit(&self) -> usize {
        self.loaded.body_limit()
    }

    /// True when the guest may read request headers in `handle_response`.
    pub(crate) fn reads_headers(&self) -> bool {
        self.loaded.reads_headers
    }

    /// True when the guest may read the request URI in `handle_response`.
    pub(crate) fn reads_uri(&self) -> bool {
        self.loaded.reads_uri
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.loaded.counters.lease_returned();
        // Without its instance (discarded, or lost with a call), the record
        // goes: the instance is counted dead.
        let kept = match (self.instance.take(), self.record.take()) {
            (Some(mut instance), Some(mut record)) => {
                record.served += 1;
                let keep = match self.loaded.isolation {
                    Isolation::Reuse => true,
                    Isolation::PerRequest => false,
                    Isolation::RecycleAfter(n) => record.served < n,
                };
                keep.then(|| {
                    instance.host().exchange = None;
                    Pooled { instance, record }
                })
            }
            _ => None,
        };
        if kept.is_none() && self.exchange.is_none() {
            return;
        }
        let mut idle = self.loaded.idle.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pooled) = kept {
            idle.instances.push(pooled);
        }
        if let Some(exchange) = self.exchange.take() {
            idle.exchanges.push(exchange);
        }
    }
}

/// What a guest call on a lease ends with: the lease, the exchange and
/// the export's result; `Err` when the backend lost the instance and the
/// exchange (the lease is dropped, its instance gone).
pub(crate) type LeaseOutcome = Result<(Lease, Box<Exchange>, Result<i64, Error>), Error>;

/// A guest call on a lease's instance ([`Lease::call`]).
pub(crate) enum LeaseCalled {
    /// The backend ran it at once.
    Ready(LeaseOutcome),
    /// The backend runs it elsewhere: await it.
    Waiting(LeaseCall),
}

impl LeaseCalled {
    /// The outcome, once the call ended.
    pub(crate) async fn outcome(self) -> LeaseOutcome {
        match self {
            LeaseCalled::Ready(outcome) => outcome,
            LeaseCalled::Waiting(call) => call.await,
        }
    }
}

/// A guest call on a lease's instance that waits.
pub(crate) struct LeaseCall {
    waiting: Pin<Box<dyn Future<Output = CallOutcome> + Send>>,
    /// The lease, its instance out with the call.
    lease: Option<Lease>,
    stage: Stage,
    timed: Option<Instant>,
}

impl Future for LeaseCall {
    type Output = LeaseOutcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<LeaseOutcome> {
        let this = &mut *self;
        let outcome = ready!(this.waiting.as_mut().poll(cx));
        let lease = this.lease.take().expect("LeaseCall polled after completion");
        Poll::Ready(lease.called(this.stage, this.timed, outcome))
    }
}
