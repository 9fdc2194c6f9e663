//! [`Broker`]: builds the shared state from a [`BrokerConfig`], binds the listeners, accepts
//! connections (one task each, see [`crate::connection`]) and shuts everything down.
//!
//! Shutdown uses a `CancellationToken` to signal (listeners stop accepting, every connection
//! closes and flushes within a deadline) and a `TaskTracker` to wait for every task.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mqtt_codec::server::ServerConfig;
use mqtt_codec::session::{Message, SessionLimits};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{BrokerConfig, ListenerType};
use crate::connection::{self, ListenerState};
use crate::error::BrokerError;
use crate::events::{EventHook, Events, LifecycleEvent};
use crate::hooks::{AccessControl, AllowAll};
use crate::listener::{self, Upgrader};
use crate::plugins::{BrokerStats, PluginManager};
use crate::router::Router;
use crate::sessions::{MailboxLimits, Registry};
use crate::store::{MemoryRetainedStore, MemorySessionStore, RetainedStore, SessionStore};
use crate::timers::{self, Timers};
use crate::transport::{Stream, Tcp};

/// An MQTT 3.1.1 broker.
///
/// ```no_run
/// # async fn run() -> Result<(), amqtt_broker::BrokerError> {
/// use amqtt_broker::{Broker, BrokerConfig};
/// let config = BrokerConfig::from_yaml_str("listeners: {default: {type: tcp, bind: \"127.0.0.1:0\"}}")?;
/// let broker = Broker::new(config)?;
/// broker.start().await?;
/// println!("listening on {:?}", broker.local_addr("default"));
/// broker.shutdown().await;
/// # Ok(()) }
/// ```
pub struct Broker {
    shared: Arc<Shared>,
    state: Mutex<State>,
    tracker: TaskTracker,
}

/// Pluggable parts of a broker: access control, event hook and stores. The defaults are
/// aMQTT's default behaviour (anonymous allowed, no topic filtering) with in-memory stores.
pub struct Extensions {
    /// Authentication and topic filtering.
    pub access: Arc<dyn AccessControl>,
    /// Receives the broker's events.
    pub events: Option<Arc<dyn EventHook>>,
    /// Where retained messages live.
    pub retained: Arc<dyn RetainedStore>,
    /// Where offline persistent sessions live.
    pub sessions: Arc<dyn SessionStore>,
    /// The counters the broker keeps for `$SYS/broker/…` (shared with `BrokerSysPlugin`).
    pub stats: Arc<BrokerStats>,
    /// The plugin manager behind `access` and `events`, kept for reloads
    /// ([`Broker::reload_plugins`]).
    pub plugins: Option<Arc<PluginManager>>,
}

impl Default for Extensions {
    fn default() -> Self {
        Extensions {
            access: Arc::new(AllowAll),
            events: None,
            retained: Arc::new(MemoryRetainedStore::new()),
            sessions: Arc::new(MemorySessionStore::new()),
            stats: Arc::new(BrokerStats::new()),
            plugins: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    New,
    Started,
    Stopped,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    addrs: BTreeMap<String, SocketAddr>,
}

/// State shared by the broker handle and every connection task.
pub(crate) struct Shared {
    pub(crate) config: BrokerConfig,
    pub(crate) server_config: Arc<ServerConfig>,
    pub(crate) session_limits: SessionLimits,
    pub(crate) router: Router,
    pub(crate) registry: Registry,
    pub(crate) access: Arc<dyn AccessControl>,
    pub(crate) filters_topics: bool,
    pub(crate) events: Events,
    pub(crate) listeners: HashMap<String, Arc<ListenerState>>,
    /// TLS and WebSocket handshakes of the listeners that have them.
    pub(crate) upgraders: HashMap<String, Arc<Upgrader>>,
    pub(crate) cancel: CancellationToken,
    /// The connections' deadlines and their shutdown signal.
    pub(crate) timers: Timers,
    pub(crate) stats: Arc<BrokerStats>,
    pub(crate) plugins: Option<Arc<PluginManager>>,
    next_conn_id: AtomicU64,
}

impl Shared {
    /// Signals shutdown to the listeners, plugins and connection tasks.
    pub(crate) fn stop(&self) {
        self.cancel.cancel();
        self.timers.stop();
    }

    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }
}

impl Broker {
    /// A broker for `config` with the plugins it names (aMQTT's default set when it names
    /// none), built by the packaged-plugin registry (see [`Broker::with_plugins`]). Nothing is
    /// bound until [`Broker::start`].
    pub fn new(config: BrokerConfig) -> Result<Broker, BrokerError> {
        Broker::with_plugins(config, &crate::plugins::PluginRegistry::new())
    }

    /// A broker for `config` with the given access control, event hook and stores.
    pub fn with_extensions(
        config: BrokerConfig,
        extensions: Extensions,
    ) -> Result<Broker, BrokerError> {
        config.validate()?;
        let limits = config.limits;
        let server_config = ServerConfig {
            max_packet_size: limits.max_packet_size,
            max_connect_packet_size: limits.max_connect_packet_size,
            connect_timeout: limits.connect_timeout,
            keep_alive_grace: config.timeout_disconnect_delay,
            max_keep_alive: limits.max_keepalive,
        };
        let session_limits = SessionLimits {
            max_inflight: limits.max_inflight,
            max_queued_messages: limits.max_queued_messages,
            max_queued_bytes: limits.max_queued_bytes,
            max_incoming_unreleased: limits.max_incoming_unreleased,
        };
        let events = Events::new(extensions.events);
        let filters_topics = extensions.access.filters_topics();
        let router = Router::new(
            extensions.retained,
            extensions.sessions,
            extensions.access.clone(),
            events.clone(),
            MailboxLimits::new(limits.max_queued_messages, limits.max_queued_bytes),
            extensions.stats.clone(),
        );
        let listeners = config
            .listeners
            .iter()
            .map(|(name, l)| {
                let state = ListenerState {
                    name: Arc::from(name.as_str()),
                    max_connections: l.max_connections,
                    connections: Default::default(),
                };
                (name.clone(), Arc::new(state))
            })
            .collect();
        let mut upgraders = HashMap::new();
        for (name, l) in &config.listeners {
            let path = format!("listeners.{name}");
            if let Some(upgrader) = Upgrader::for_listener(l, &path, limits.max_packet_size)? {
                upgraders.insert(name.clone(), Arc::new(upgrader));
            }
        }
        let shared = Shared {
            config,
            server_config: Arc::new(server_config),
            session_limits,
            router,
            registry: Registry::default(),
            access: extensions.access,
            filters_topics,
            events,
            listeners,
            upgraders,
            cancel: CancellationToken::new(),
            timers: Timers::new(),
            stats: extensions.stats,
            plugins: extensions.plugins,
            next_conn_id: AtomicU64::new(1),
        };
        Ok(Broker {
            shared: Arc::new(shared),
            state: Mutex::new(State {
                phase: Phase::New,
                addrs: BTreeMap::new(),
            }),
            tracker: TaskTracker::new(),
        })
    }

    /// The state shared with connection tasks (for the plugin wiring).
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The configuration this broker runs.
    pub fn config(&self) -> &BrokerConfig {
        &self.shared.config
    }

    /// Binds every listener that has a `bind` and starts accepting connections; returns once
    /// all are listening. A bind failure stops the listeners already started and is returned.
    ///
    /// Not cancel-safe: dropping the future part-way may leave some listeners running until
    /// [`Broker::shutdown`].
    pub async fn start(&self) -> Result<(), BrokerError> {
        {
            let state = self.state.lock();
            match state.phase {
                Phase::New => {}
                Phase::Started => return Err(BrokerError::InvalidState("already started")),
                Phase::Stopped => return Err(BrokerError::InvalidState("stopped")),
            }
        }
        self.shared.events.lifecycle(LifecycleEvent::PreStart).await;
        self.spawn_timer_driver();
        let mut bound = Vec::new();
        for (name, listener) in &self.shared.config.listeners {
            if listener.listener_type == ListenerType::External {
                continue;
            }
            let Some((host, port)) = listener.bind_host_port() else {
                tracing::info!(listener = %name, "listener has no bind address; not started");
                continue;
            };
            let bind = listener.bind.clone().unwrap_or_default();
            let socket = match bind_tcp(&host, port).await {
                Ok(Some(socket)) => socket,
                Ok(None) => {
                    self.shared.stop();
                    return Err(BrokerError::Resolve {
                        listener: name.clone(),
                        bind,
                    });
                }
                Err(source) => {
                    // Stop the listeners already accepting.
                    self.shared.stop();
                    return Err(BrokerError::Bind {
                        listener: name.clone(),
                        bind,
                        source,
                    });
                }
            };
            let addr = socket.local_addr()?;
            let upgrader = self.shared.upgraders.get(name).cloned();
            let kind = upgrader.as_ref().map_or("tcp", |u| u.kind());
            tracing::info!(listener = %name, %addr, max_connections = listener.max_connections, "listening ({kind})");
            bound.push((name.clone(), addr));
            let Some(state) = self.shared.listeners.get(name).cloned() else {
                continue;
            };
            self.tracker.spawn(accept_loop(
                socket,
                self.shared.clone(),
                state,
                self.tracker.clone(),
                upgrader,
            ));
        }
        if let Some(interval) = self.shared.config.session_expiry_interval {
            self.tracker
                .spawn(expiry_loop(self.shared.clone(), interval));
        }
        if self.shared.config == BrokerConfig::default() {
            tracing::info!(
                "no configuration given: listening on 127.0.0.1:1883 only; to listen on all interfaces, \
                 run with a config file containing `listeners: {{default: {{type: tcp, bind: \"0.0.0.0:1883\"}}}}`"
            );
        }
        {
            let mut state = self.state.lock();
            state.phase = Phase::Started;
            state.addrs.extend(bound);
        }
        self.shared
            .events
            .lifecycle(LifecycleEvent::PostStart)
            .await;
        Ok(())
    }

    /// The address the listener `name` is bound to, once started.
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.state.lock().addrs.get(name).copied()
    }

    /// Every bound listener with its address, by name.
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.state
            .lock()
            .addrs
            .iter()
            .map(|(n, a)| (n.clone(), *a))
            .collect()
    }

    /// Stops accepting, closes every client connection (flushing what is queued, within a
    /// deadline), and returns when every task has ended or `shutdown_timeout` has passed.
    /// Persistent sessions are kept in the session store. Calling it again does nothing.
    ///
    /// Cancel-safe: the shutdown is signalled at the first poll; dropping the future only stops
    /// the waiting.
    pub async fn shutdown(&self) {
        let was = {
            let mut state = self.state.lock();
            std::mem::replace(&mut state.phase, Phase::Stopped)
        };
        if was == Phase::Stopped {
            return;
        }
        self.shared
            .events
            .lifecycle(LifecycleEvent::PreShutdown)
            .await;
        self.shared.stop();
        self.tracker.close();
        let deadline = self.shared.config.limits.shutdown_timeout + Duration::from_secs(1);
        if tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                tasks = self.tracker.len(),
                "shutdown deadline passed with tasks still running"
            );
        }
        self.state.lock().addrs.clear();
        tracing::info!("broker stopped");
        self.shared
            .events
            .lifecycle(LifecycleEvent::PostShutdown)
            .await;
    }

    /// Serves an already-established connection (aMQTT's `external_connected`) under the
    /// listener `listener_name` (any listener of the config; `type: external` listeners exist for
    /// this). Returns when the connection has ended. The listener's `max_connections` applies.
    ///
    /// Cancel-safe in that dropping the future drops the connection without publishing its will;
    /// prefer letting it end.
    pub async fn external_connected<S>(
        &self,
        stream: S,
        listener_name: &str,
    ) -> Result<(), BrokerError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Some(listener) = self.shared.listeners.get(listener_name).cloned() else {
            return Err(BrokerError::UnknownListener(listener_name.to_owned()));
        };
        let Some(slot) = listener.try_acquire() else {
            return Err(BrokerError::TooManyConnections {
                listener: listener_name.to_owned(),
                max: listener.max_connections,
                peer: None,
            });
        };
        self.spawn_timer_driver();
        let serve = connection::serve(Stream(stream), self.shared.clone(), slot);
        self.tracker.track_future(serve).await;
        Ok(())
    }

    /// Spawns the task that fires the connections' deadlines, unless it runs already.
    fn spawn_timer_driver(&self) {
        if self.shared.timers.needs_driver() {
            self.tracker.spawn(timers::drive(self.shared.clone()));
        }
    }

    /// Publishes a message from the broker itself (aMQTT's `internal_message_broadcast`; also
    /// stores or clears it as retained when `message.retain` is set). Returns the number of
    /// subscribers it reached.
    pub fn publish(&self, message: Message) -> usize {
        self.shared.router.route(None, &message)
    }

    /// Clients currently connected.
    pub fn connected_clients(&self) -> usize {
        self.shared
            .listeners
            .values()
            .map(|l| l.connections.load(Ordering::Relaxed))
            .sum()
    }

    /// Sessions known to the broker: connected clients plus stored persistent sessions.
    pub fn session_count(&self) -> usize {
        self.shared.registry.len()
    }

    /// Number of (filter, client) subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.shared.router.subscription_count()
    }

    /// Number of retained topics.
    pub fn retained_count(&self) -> usize {
        self.shared.router.retained.len()
    }
}

impl Default for Broker {
    /// aMQTT's default configuration, listening on `127.0.0.1:1883` only.
    // The default configuration is valid by construction (checked in tests/limits.rs), and
    // building a broker does no IO: this cannot fail.
    #[allow(clippy::expect_used)]
    fn default() -> Self {
        Broker::new(BrokerConfig::default()).expect("the default configuration is valid")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // A broker dropped without `shutdown` still stops its tasks.
        self.shared.stop();
    }
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("state", &*self.state.lock())
            .finish_non_exhaustive()
    }
}

async fn bind_tcp(host: &str, port: u16) -> std::io::Result<Option<TcpListener>> {
    let mut last_err = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        match TcpListener::bind(addr).await {
            Ok(listener) => return Ok(Some(listener)),
            Err(e) => last_err = Some(e),
        }
    }
    match last_err {
        Some(e) => Err(e),
        None => Ok(None),
    }
}

async fn accept_loop(
    socket: TcpListener,
    shared: Arc<Shared>,
    listener: Arc<ListenerState>,
    tracker: TaskTracker,
    upgrader: Option<Arc<Upgrader>>,
) {
    loop {
        let accepted = tokio::select! {
            _ = shared.cancel.cancelled() => break,
            accepted = socket.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let Some(slot) = listener.try_acquire() else {
                    tracing::warn!(listener = %listener.name, %peer, max = listener.max_connections, "connection limit reached; closing the new connection");
                    drop(stream);
                    continue;
                };
                // Small packets (acks, PINGRESP) must not wait for Nagle.
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(%peer, "set_nodelay failed: {e}");
                }
                tracing::debug!(listener = %listener.name, %peer, "accepted a connection");
                if let Some(upgrader) = &upgrader {
                    // TLS and WebSocket handshakes run in the connection's task.
                    tracker.spawn(listener::serve_upgraded(
                        stream,
                        peer,
                        shared.clone(),
                        listener.name.clone(),
                        slot,
                        upgrader.clone(),
                    ));
                    continue;
                }
                tracker.spawn(connection::serve(Tcp(stream), shared.clone(), slot));
            }
            Err(e) => {
                // E.g. EMFILE: back off briefly instead of spinning on the error.
                tracing::warn!(listener = %listener.name, "accept failed: {e}");
                tokio::select! {
                    _ = shared.cancel.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }
    tracing::debug!(listener = %listener.name, "listener stopped");
}

/// Drops persistent sessions disconnected for longer than `session_expiry_interval`, checking
/// every second like aMQTT (or more often for shorter intervals).
async fn expiry_loop(shared: Arc<Shared>, interval: Duration) {
    let period = interval.clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => break,
            _ = ticker.tick() => expire_sessions(&shared, interval),
        }
    }
}

fn expire_sessions(shared: &Shared, interval: Duration) {
    let store = &shared.router.sessions;
    for client_id in store.expired(SystemTime::now(), interval) {
        match shared.registry.get(&client_id) {
            Some(sub) => {
                let mut state = sub.state.lock();
                if state.online.is_some() || state.removed {
                    continue;
                }
                shared.router.unsubscribe_all(&sub, &mut state);
                state.removed = true;
                store.remove(&client_id);
                shared.registry.remove(&sub);
            }
            None => {
                store.remove(&client_id);
            }
        }
        tracing::info!(%client_id, "persistent session expired (session_expiry_interval)");
    }
}
