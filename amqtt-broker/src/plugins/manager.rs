//! The plugin manager: builds the configured plugins, delivers events to them without ever
//! making the broker wait, and combines their authentication and topic-filtering answers.
//!
//! Each plugin that listens to events gets its own bounded queue and task. [`PluginManager::emit`]
//! only `try_send`s: when a plugin's queue is full the event is dropped for that plugin, counted
//! and logged, so a slow plugin loses its own events and delays nobody. A panic inside a plugin
//! is caught and logged; the plugin keeps receiving later events.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use mqtt_codec::ConnectReturnCode;

use crate::events::{BrokerEvent, EventHook, LifecycleEvent};
use crate::hooks::{AccessControl, BoxFuture};
use crate::plugins::registry::Reloader;
use crate::plugins::{
    action_name, Action, BrokerPlugin, ClientInfo, ConnectRequest, Hooks, PluginContext,
    PluginError, PluginEvent, PluginRegistry, PluginSpec,
};

/// Events a plugin may have waiting before new ones are dropped for it.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;
/// How long [`PluginManager::fire_and_wait`] and [`PluginManager::shutdown`] wait for plugins.
const DEFAULT_LIFECYCLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The broker's plugins. Build it with [`PluginManager::builder`].
pub struct PluginManager {
    slots: Vec<Slot>,
    /// Union of the event hooks of all plugins: one bit test tells whether to build an event.
    listening: Hooks,
    auth: Vec<usize>,
    topic: Vec<usize>,
    topic_filtering_enabled: bool,
    queue_capacity: usize,
    lifecycle_timeout: Duration,
    queues: OnceLock<Vec<Option<mpsc::Sender<Envelope>>>>,
    stop: CancellationToken,
    tasks: TaskTracker,
    context: PluginContext,
}

struct Slot {
    name: Arc<str>,
    plugin: Arc<dyn BrokerPlugin>,
    hooks: Hooks,
    dropped: AtomicU64,
    /// The spec it was built from (`None` for instances), and the config section now applied.
    spec: Option<std::sync::Mutex<PluginSpec>>,
    reloader: Option<Reloader>,
}

struct Envelope {
    event: Arc<PluginEvent>,
    done: Option<oneshot::Sender<()>>,
}

/// Collects plugins (by name from a registry, or as instances) and builds a [`PluginManager`].
pub struct PluginManagerBuilder<'r> {
    registry: &'r PluginRegistry,
    context: PluginContext,
    entries: Vec<Entry>,
    topic_filtering_enabled: bool,
    queue_capacity: usize,
    lifecycle_timeout: Duration,
}

enum Entry {
    Spec(PluginSpec),
    Instance(String, Arc<dyn BrokerPlugin>),
}

impl<'r> PluginManagerBuilder<'r> {
    /// The context plugins are built with: hand a clone to plugin instances that need to
    /// publish or read the broker's state.
    pub fn context(&self) -> &PluginContext {
        &self.context
    }

    /// Adds the plugin `spec` names (built from the registry, in order).
    pub fn spec(mut self, spec: PluginSpec) -> Self {
        self.entries.push(Entry::Spec(spec));
        self
    }

    /// Adds several specs, in order.
    pub fn specs(mut self, specs: impl IntoIterator<Item = PluginSpec>) -> Self {
        self.entries.extend(specs.into_iter().map(Entry::Spec));
        self
    }

    /// Adds a plugin instance under `name` (used in logs).
    pub fn plugin(mut self, name: impl Into<String>, plugin: Arc<dyn BrokerPlugin>) -> Self {
        self.entries.push(Entry::Instance(name.into(), plugin));
        self
    }

    /// Whether topic plugins are asked at all (default `true`; aMQTT's legacy
    /// `topic-check.enabled`).
    pub fn topic_filtering(mut self, enabled: bool) -> Self {
        self.topic_filtering_enabled = enabled;
        self
    }

    /// The per-plugin event queue size (default [`DEFAULT_QUEUE_CAPACITY`], at least 1).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// How long lifecycle events and shutdown wait for plugins (default 10 s).
    pub fn lifecycle_timeout(mut self, timeout: Duration) -> Self {
        self.lifecycle_timeout = timeout;
        self
    }

    /// Builds every plugin; the first failure is returned and nothing is started.
    pub fn build(self) -> Result<PluginManager, PluginError> {
        let mut slots = Vec::with_capacity(self.entries.len());
        for entry in self.entries {
            let (name, plugin, spec, reloader) = match entry {
                Entry::Spec(spec) => {
                    let built = self.registry.build_reloadable(&spec, &self.context)?;
                    (spec.name.clone(), built.plugin, Some(spec), built.reloader)
                }
                Entry::Instance(name, plugin) => (name, plugin, None, None),
            };
            let hooks = plugin.hooks();
            slots.push(Slot {
                name: Arc::from(name),
                plugin,
                hooks,
                dropped: AtomicU64::new(0),
                spec: spec.map(std::sync::Mutex::new),
                reloader,
            });
        }
        let listening = slots
            .iter()
            .fold(Hooks::NONE, |acc, s| acc | s.hooks)
            .intersection(Hooks::ALL_EVENTS);
        let indices = |hook: Hooks| -> Vec<usize> {
            slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.hooks.contains(hook))
                .map(|(i, _)| i)
                .collect()
        };
        let auth = indices(Hooks::AUTHENTICATE);
        let topic = indices(Hooks::TOPIC_FILTERING);
        if auth.is_empty() {
            tracing::warn!("no authentication plugin configured: every CONNECT will be refused");
        } else if auth.iter().all(|&i| {
            slots
                .get(i)
                .is_some_and(|s| s.hooks.contains(Hooks::USERNAME_ONLY_AUTH))
        }) {
            tracing::warn!(
                "AnonymousAuthPlugin with allow_anonymous: false is the only authentication: \
                 any client that sends a user name is let in without a password check (aMQTT \
                 behaviour), including as `admin`; add FileAuthPlugin to check passwords"
            );
        }
        Ok(PluginManager {
            slots,
            listening,
            auth,
            topic,
            topic_filtering_enabled: self.topic_filtering_enabled,
            queue_capacity: self.queue_capacity,
            lifecycle_timeout: self.lifecycle_timeout,
            queues: OnceLock::new(),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            context: self.context,
        })
    }
}

impl PluginManager {
    /// A builder taking plugin names from `registry` and giving each plugin `context`.
    pub fn builder(registry: &PluginRegistry, context: PluginContext) -> PluginManagerBuilder<'_> {
        PluginManagerBuilder {
            registry,
            context,
            entries: Vec::new(),
            topic_filtering_enabled: true,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            lifecycle_timeout: DEFAULT_LIFECYCLE_TIMEOUT,
        }
    }

    /// The context the plugins were built with (attach the broker to it when it starts).
    pub fn context(&self) -> &PluginContext {
        &self.context
    }

    /// The plugin names, in order.
    pub fn plugin_names(&self) -> impl Iterator<Item = &str> {
        self.slots.iter().map(|s| &*s.name)
    }

    /// Starts one task per plugin that listens to events. Must be called inside a tokio
    /// runtime; calling it again does nothing. Events emitted before it are dropped.
    pub fn start(&self) {
        self.queues.get_or_init(|| {
            self.slots
                .iter()
                .map(|slot| {
                    if !slot.hooks.intersects(Hooks::ALL_EVENTS) {
                        return None;
                    }
                    let (tx, rx) = mpsc::channel(self.queue_capacity);
                    let plugin = slot.plugin.clone();
                    let name = slot.name.clone();
                    let stop = self.stop.clone();
                    self.tasks.spawn(run_plugin(name, plugin, rx, stop));
                    Some(tx)
                })
                .collect()
        });
    }

    /// Whether any plugin listens to `hook`: check it before building an event, so that
    /// nothing is allocated when nobody listens. A single bit test.
    #[inline]
    pub fn wants(&self, hook: Hooks) -> bool {
        self.listening.intersects(hook)
    }

    /// Queues `event` for every plugin listening to it, without waiting. When a plugin's queue
    /// is full the event is dropped for that plugin and counted. Never blocks.
    pub fn emit(&self, event: PluginEvent) {
        let hook = event.hook();
        if !self.wants(hook) {
            return;
        }
        let Some(queues) = self.queues.get() else {
            tracing::debug!(event = event.name(), "plugins not started: event dropped");
            return;
        };
        let event = Arc::new(event);
        for (slot, queue) in self.slots.iter().zip(queues) {
            let Some(queue) = queue.as_ref().filter(|_| slot.hooks.intersects(hook)) else {
                continue;
            };
            let envelope = Envelope {
                event: event.clone(),
                done: None,
            };
            if let Err(mpsc::error::TrySendError::Full(_)) = queue.try_send(envelope) {
                let dropped = slot.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped == 1 || dropped % 1000 == 0 {
                    tracing::warn!(
                        plugin = &*slot.name,
                        event = event.name(),
                        dropped,
                        "plugin event queue full: event dropped"
                    );
                }
            }
        }
    }

    /// Builds and queues an event only if some plugin listens to `hook`.
    #[inline]
    pub fn emit_with(&self, hook: Hooks, event: impl FnOnce() -> PluginEvent) {
        if self.wants(hook) {
            self.emit(event());
        }
    }

    /// Delivers `event` to every listening plugin and waits until each has handled it (and
    /// everything queued before it), at most the lifecycle timeout. For the awaited aMQTT
    /// events: pre/post start and shutdown. Starts the plugin tasks if needed.
    ///
    /// Cancel-safe: dropping the future only stops waiting.
    pub async fn fire_and_wait(&self, event: PluginEvent) {
        self.start();
        let hook = event.hook();
        let Some(queues) = self.queues.get() else {
            return;
        };
        let event = Arc::new(event);
        let deadline = tokio::time::Instant::now() + self.lifecycle_timeout;
        // Every plugin at once, so one slow plugin does not use up the others' time.
        let deliveries = self.slots.iter().zip(queues).filter_map(|(slot, queue)| {
            let queue = queue.as_ref().filter(|_| slot.hooks.intersects(hook))?;
            let event = event.clone();
            Some(async move {
                let (done, handled) = oneshot::channel();
                let envelope = Envelope {
                    event: event.clone(),
                    done: Some(done),
                };
                let delivered = tokio::time::timeout_at(deadline, async {
                    queue.send(envelope).await.is_ok() && handled.await.is_ok()
                })
                .await;
                if delivered.is_err() {
                    tracing::warn!(
                        plugin = &*slot.name,
                        event = event.name(),
                        "plugin did not handle the lifecycle event in time"
                    );
                }
            })
        });
        futures_util::future::join_all(deliveries).await;
    }

    /// Whether the client of `request` may connect. Every plugin declaring
    /// [`Hooks::AUTHENTICATE`] is asked at once; `None` answers are ignored, any `Some(false)`
    /// (or a panic) denies, and at least one `Some(true)` is needed. With no authentication
    /// plugin every client is refused, as in aMQTT.
    ///
    /// Cancel-safe.
    pub async fn authenticate(&self, request: &ConnectRequest<'_>) -> bool {
        let mut asks: Vec<BoxFuture<'_, _>> = Vec::with_capacity(self.auth.len());
        for slot in self.auth.iter().filter_map(|&i| self.slots.get(i)) {
            let ask = AssertUnwindSafe(slot.plugin.authenticate(request)).catch_unwind();
            asks.push(Box::pin(async move { (slot, ask.await) }));
        }
        let answers = futures_util::future::join_all(asks).await;
        let mut allowed = false;
        for (slot, answer) in answers {
            match answer {
                Ok(Some(true)) => allowed = true,
                Ok(None) => {}
                Ok(Some(false)) => {
                    tracing::debug!(plugin = &*slot.name, client_id = %request.client.client_id, "authentication denied");
                    return false;
                }
                Err(_) => {
                    tracing::error!(
                        plugin = &*slot.name,
                        "plugin panicked in authenticate: client refused"
                    );
                    return false;
                }
            }
        }
        allowed
    }

    /// Whether topic checks are switched on (aMQTT's legacy `topic-check.enabled`).
    pub fn topic_filtering_enabled(&self) -> bool {
        self.topic_filtering_enabled
    }

    /// Whether topic checks are on and some plugin filters topics; when `false`,
    /// [`PluginManager::topic_filtering`] always allows, so the broker may skip it.
    #[inline]
    pub fn filters_topics(&self) -> bool {
        self.topic_filtering_enabled && !self.topic.is_empty()
    }

    /// Whether `session` may `action` on `topic` (a filter for [`Action::Subscribe`]). The
    /// plugins declaring [`Hooks::TOPIC_FILTERING`] are asked in order: any `Some(false)` (or a
    /// panic) denies and stops; `None` answers are ignored (as aMQTT documents; aMQTT 0.12's
    /// code counts them as a deny), so a broker whose topic plugins all abstain allows. With
    /// checks off or no topic plugin, everything is allowed. Allocates nothing itself.
    pub fn topic_filtering(&self, session: &ClientInfo, topic: &str, action: Action) -> bool {
        if !self.filters_topics() {
            return true;
        }
        for slot in self.topic.iter().filter_map(|&i| self.slots.get(i)) {
            let answer = std::panic::catch_unwind(AssertUnwindSafe(|| {
                slot.plugin.topic_filtering(session, topic, action)
            }));
            match answer {
                Ok(Some(true) | None) => {}
                Ok(Some(false)) => {
                    tracing::debug!(
                        plugin = &*slot.name,
                        client_id = %session.client_id,
                        topic,
                        action = action_name(action),
                        "topic access denied"
                    );
                    return false;
                }
                Err(_) => {
                    tracing::error!(
                        plugin = &*slot.name,
                        "plugin panicked in topic_filtering: denied"
                    );
                    return false;
                }
            }
        }
        true
    }

    /// Applies new config sections to the running plugins (a reload, e.g. on SIGHUP), all or
    /// nothing: `specs` must name the plugins built from specs, in the same order. Each
    /// reloadable plugin first prepares its change (a password file is read and checked, an
    /// ACL parsed); if any fails, nothing changes and the error is returned. A plugin that
    /// cannot reload keeps its old config, with a warning when its section changed. Plugins
    /// passed as instances are left alone.
    pub fn reload(&self, specs: &[PluginSpec]) -> Result<(), PluginError> {
        let slots: Vec<&Slot> = self.slots.iter().filter(|s| s.spec.is_some()).collect();
        let same_plugins = slots.len() == specs.len()
            && slots
                .iter()
                .zip(specs)
                .all(|(slot, spec)| *slot.name == *spec.name);
        if !same_plugins {
            return Err(PluginError::init(
                "plugins",
                "plugins were added, removed or reordered: restart the broker to apply that",
            ));
        }
        let mut prepared = Vec::new();
        for (slot, spec) in slots.iter().zip(specs) {
            let context = self.context.for_plugin(&slot.name);
            let change = match &slot.reloader {
                // Type-checks the new section even when the plugin cannot apply it.
                Some(reloader) => reloader(spec.config.as_ref(), &context)?,
                None => None,
            };
            match change {
                Some(change) => prepared.push(change),
                None => {
                    let changed = slot
                        .spec
                        .as_ref()
                        .and_then(|old| old.lock().ok().map(|old| old.config != spec.config))
                        .unwrap_or(false);
                    if changed {
                        tracing::warn!(
                            plugin = &*slot.name,
                            "this plugin cannot reload: its new config applies after a restart"
                        );
                    }
                }
            }
        }
        for change in prepared {
            change();
        }
        tracing::info!("plugins reloaded");
        Ok(())
    }

    /// Events dropped so far because a plugin's queue was full, summed over plugins.
    pub fn dropped_events(&self) -> u64 {
        self.slots
            .iter()
            .map(|s| s.dropped.load(Ordering::Relaxed))
            .sum()
    }

    /// Stops the plugin tasks once they have handled the events already queued, waiting up
    /// to the lifecycle timeout, then calls every plugin's [`close`](BrokerPlugin::close).
    /// Events emitted afterwards are dropped.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        self.tasks.close();
        if tokio::time::timeout(self.lifecycle_timeout, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("plugin tasks did not stop in time");
        }
        for slot in &self.slots {
            let closed = AssertUnwindSafe(slot.plugin.close()).catch_unwind();
            match tokio::time::timeout(self.lifecycle_timeout, closed).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => tracing::error!(plugin = &*slot.name, "plugin panicked in close"),
                Err(_) => tracing::warn!(plugin = &*slot.name, "plugin close timed out"),
            }
        }
    }
}

impl AccessControl for PluginManager {
    /// Refusals get CONNACK 0x05 (not authorized), as in aMQTT, which never sends 0x04.
    fn authenticate<'a>(&'a self, request: ConnectRequest<'a>) -> BoxFuture<'a, ConnectReturnCode> {
        Box::pin(async move {
            if PluginManager::authenticate(self, &request).await {
                ConnectReturnCode::Accepted
            } else {
                ConnectReturnCode::NotAuthorized
            }
        })
    }

    fn filters_topics(&self) -> bool {
        PluginManager::filters_topics(self)
    }

    fn check_topic(&self, client: &ClientInfo, topic: &str, action: Action) -> bool {
        self.topic_filtering(client, topic, action)
    }
}

impl EventHook for PluginManager {
    fn on_event(&self, event: &BrokerEvent<'_>) {
        // The bit test first: nothing is copied for events no plugin listens to.
        let Some(hook) = PluginEvent::hook_of(event) else {
            return;
        };
        if !self.wants(hook) {
            return;
        }
        if let Some(owned) = PluginEvent::from_broker(event) {
            self.emit(owned);
        }
    }

    fn on_lifecycle(&self, event: LifecycleEvent) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            match event {
                LifecycleEvent::PreStart => self.fire_and_wait(PluginEvent::PreStart).await,
                LifecycleEvent::PostStart => self.fire_and_wait(PluginEvent::PostStart).await,
                LifecycleEvent::PreShutdown => self.fire_and_wait(PluginEvent::PreShutdown).await,
                LifecycleEvent::PostShutdown => {
                    self.fire_and_wait(PluginEvent::PostShutdown).await;
                    self.shutdown().await;
                }
            }
        })
    }

    fn wants_packets(&self) -> bool {
        self.wants(Hooks::PACKET_RECEIVED)
    }
}

impl Drop for PluginManager {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl std::fmt::Debug for PluginManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginManager")
            .field("plugins", &self.plugin_names().collect::<Vec<_>>())
            .field("listening", &self.listening)
            .field("topic_filtering_enabled", &self.topic_filtering_enabled)
            .finish_non_exhaustive()
    }
}

async fn run_plugin(
    name: Arc<str>,
    plugin: Arc<dyn BrokerPlugin>,
    mut queue: mpsc::Receiver<Envelope>,
    stop: CancellationToken,
) {
    loop {
        let envelope = tokio::select! {
            biased;
            () = stop.cancelled() => {
                // Shutdown: handle what is already queued (at most the queue's capacity; the
                // manager bounds the wait), then stop.
                while let Ok(envelope) = queue.try_recv() {
                    handle(&name, &*plugin, envelope).await;
                }
                break;
            }
            envelope = queue.recv() => envelope,
        };
        let Some(envelope) = envelope else { break };
        handle(&name, &*plugin, envelope).await;
    }
}

async fn handle(name: &str, plugin: &dyn BrokerPlugin, envelope: Envelope) {
    let handled = AssertUnwindSafe(envelope.event.dispatch(plugin))
        .catch_unwind()
        .await;
    if handled.is_err() {
        tracing::error!(
            plugin = name,
            event = envelope.event.name(),
            "plugin panicked while handling an event"
        );
    }
    if let Some(done) = envelope.done {
        let _ = done.send(());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use mqtt_codec::packet::Packet;

    use super::*;
    use crate::plugins::tests::client;

    /// Records the events it sees; optionally blocks until released.
    #[derive(Default)]
    struct Recorder {
        seen: Mutex<Vec<String>>,
        gate: Option<tokio::sync::Semaphore>,
        auth: Option<Option<bool>>,
        topic: Option<Option<bool>>,
        panic_on_connect: bool,
    }

    #[async_trait]
    impl BrokerPlugin for Recorder {
        fn hooks(&self) -> Hooks {
            let mut hooks = Hooks::ALL_EVENTS;
            if self.auth.is_some() {
                hooks |= Hooks::AUTHENTICATE;
            }
            if self.topic.is_some() {
                hooks |= Hooks::TOPIC_FILTERING;
            }
            hooks
        }
        async fn on_broker_client_connected(&self, session: &ClientInfo) {
            if let Some(gate) = &self.gate {
                let _permit = gate.acquire().await;
            }
            if self.panic_on_connect && &*session.client_id == "boom" {
                panic!("plugin bug");
            }
            self.seen
                .lock()
                .unwrap()
                .push(session.client_id.to_string());
        }
        async fn on_broker_post_shutdown(&self) {
            self.seen.lock().unwrap().push("post_shutdown".into());
        }
        async fn authenticate(&self, _request: &ConnectRequest<'_>) -> Option<bool> {
            self.auth.flatten()
        }
        fn topic_filtering(
            &self,
            _session: &ClientInfo,
            _topic: &str,
            _action: Action,
        ) -> Option<bool> {
            self.topic.flatten()
        }
    }

    fn manager(plugins: Vec<Arc<dyn BrokerPlugin>>) -> PluginManager {
        let registry = PluginRegistry::empty();
        let mut b = PluginManager::builder(&registry, PluginContext::new());
        for (i, p) in plugins.into_iter().enumerate() {
            b = b.plugin(format!("p{i}"), p);
        }
        b.build().unwrap()
    }

    fn connected(id: &str) -> PluginEvent {
        PluginEvent::ClientConnected {
            session: client(id, None),
        }
    }

    async fn auth(m: &PluginManager) -> bool {
        let info = client("c", None);
        m.authenticate(&ConnectRequest {
            client: &info,
            password: None,
        })
        .await
    }

    fn recorder(auth: Option<Option<bool>>, topic: Option<Option<bool>>) -> Arc<dyn BrokerPlugin> {
        Arc::new(Recorder {
            auth,
            topic,
            ..Recorder::default()
        })
    }

    #[tokio::test]
    async fn events_arrive_in_order_and_lifecycle_waits_for_them() {
        let rec = Arc::new(Recorder::default());
        let m = manager(vec![rec.clone()]);
        m.start();
        for i in 0..100 {
            m.emit(connected(&format!("c{i}")));
        }
        m.fire_and_wait(PluginEvent::PostShutdown).await;
        let seen = rec.seen.lock().unwrap().clone();
        let mut expected: Vec<String> = (0..100).map(|i| format!("c{i}")).collect();
        expected.push("post_shutdown".into());
        assert_eq!(seen, expected);
        m.shutdown().await;
    }

    #[tokio::test]
    async fn a_stuck_plugin_loses_events_but_never_blocks_emit_or_other_plugins() {
        let stuck = Arc::new(Recorder {
            gate: Some(tokio::sync::Semaphore::new(0)),
            ..Recorder::default()
        });
        let healthy = Arc::new(Recorder::default());
        let registry = PluginRegistry::empty();
        let m = PluginManager::builder(&registry, PluginContext::new())
            .plugin("stuck", stuck.clone())
            .plugin("healthy", healthy.clone())
            .queue_capacity(4)
            .lifecycle_timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        m.start();
        let emitted = tokio::time::timeout(Duration::from_secs(5), async {
            for i in 0..50 {
                m.emit(connected(&format!("c{i}")));
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(emitted.is_ok(), "emit must never wait");
        // The stuck plugin holds one event and 4 queued; the rest were dropped for it only.
        assert!(m.dropped_events() >= 45, "dropped {}", m.dropped_events());
        m.fire_and_wait(PluginEvent::PostShutdown).await; // bounded by the 200 ms timeout
        assert_eq!(healthy.seen.lock().unwrap().len(), 51);
        if let Some(gate) = &stuck.gate {
            gate.add_permits(1000);
        }
        m.shutdown().await;
    }

    #[tokio::test]
    async fn shutdown_handles_events_already_queued() {
        struct ConnectedOnly(Mutex<Vec<String>>);
        #[async_trait]
        impl BrokerPlugin for ConnectedOnly {
            fn hooks(&self) -> Hooks {
                Hooks::CLIENT_CONNECTED
            }
            async fn on_broker_client_connected(&self, session: &ClientInfo) {
                self.0.lock().unwrap().push(session.client_id.to_string());
            }
        }
        let plugin = Arc::new(ConnectedOnly(Mutex::new(Vec::new())));
        let m = manager(vec![plugin.clone()]);
        m.start();
        m.emit(connected("a"));
        m.emit(connected("b"));
        m.shutdown().await;
        m.emit(connected("late"));
        assert_eq!(*plugin.0.lock().unwrap(), ["a", "b"]);
    }

    #[tokio::test]
    async fn a_panicking_plugin_is_logged_and_keeps_receiving() {
        let rec = Arc::new(Recorder {
            panic_on_connect: true,
            ..Recorder::default()
        });
        let m = manager(vec![rec.clone()]);
        m.start();
        m.emit(connected("a"));
        m.emit(connected("boom"));
        m.emit(connected("b"));
        m.fire_and_wait(PluginEvent::PostShutdown).await;
        assert_eq!(*rec.seen.lock().unwrap(), ["a", "b", "post_shutdown"]);
        m.shutdown().await;
    }

    #[tokio::test]
    async fn nothing_listens_means_wants_is_false() {
        let m = manager(vec![recorder(Some(Some(true)), None)]);
        assert!(m.wants(Hooks::PACKET_RECEIVED));
        struct AuthOnly;
        #[async_trait]
        impl BrokerPlugin for AuthOnly {
            fn hooks(&self) -> Hooks {
                Hooks::AUTHENTICATE
            }
        }
        let m = manager(vec![Arc::new(AuthOnly)]);
        assert!(!m.wants(Hooks::PACKET_RECEIVED));
        assert!(!m.wants(Hooks::ALL_EVENTS));
        let mut built = false;
        m.emit_with(Hooks::PACKET_SENT, || {
            built = true;
            PluginEvent::PacketSent {
                session: None,
                packet: Packet::PingResp,
            }
        });
        assert!(!built);
    }

    #[tokio::test]
    async fn authentication_combining_follows_amqtt() {
        let t = || recorder(Some(Some(true)), None);
        let f = || recorder(Some(Some(false)), None);
        let n = || recorder(Some(None), None);
        assert!(!auth(&manager(vec![])).await, "no auth plugin refuses");
        assert!(!auth(&manager(vec![n()])).await, "only abstentions refuse");
        assert!(auth(&manager(vec![t()])).await);
        assert!(auth(&manager(vec![n(), t(), n()])).await);
        assert!(!auth(&manager(vec![t(), f()])).await);
        assert!(!auth(&manager(vec![f(), n()])).await);
    }

    #[test]
    fn topic_combining_denies_on_any_false_and_ignores_none() {
        let s = client("c", None);
        let t = || recorder(None, Some(Some(true)));
        let f = || recorder(None, Some(Some(false)));
        let n = || recorder(None, Some(None));
        let check = |m: PluginManager| {
            (
                m.topic_filtering(&s, "a/b", Action::Publish),
                m.topic_filtering(&s, "a/#", Action::Subscribe),
                m.check_topic(&s, "a/b", Action::Receive),
            )
        };
        assert_eq!(check(manager(vec![])), (true, true, true));
        assert_eq!(check(manager(vec![t(), n()])), (true, true, true));
        assert_eq!(check(manager(vec![n()])), (true, true, true));
        assert_eq!(check(manager(vec![t(), f()])), (false, false, false));
        assert_eq!(check(manager(vec![f(), n()])), (false, false, false));
        let registry = PluginRegistry::empty();
        let disabled = PluginManager::builder(&registry, PluginContext::new())
            .plugin("deny", f())
            .topic_filtering(false)
            .build()
            .unwrap();
        assert!(!AccessControl::filters_topics(&disabled));
        assert_eq!(check(disabled), (true, true, true));
    }

    #[tokio::test]
    async fn registry_names_build_through_the_manager_and_errors_propagate() {
        let registry = PluginRegistry::new();
        let m = PluginManager::builder(&registry, PluginContext::new())
            .specs(crate::plugins::default_plugin_specs())
            .build()
            .unwrap();
        assert_eq!(m.plugin_names().count(), 4);
        // aMQTT's default set with logging off: no per-message or per-packet event is built.
        assert!(!m.wants(
            Hooks::MESSAGE_RECEIVED
                | Hooks::MESSAGE_BROADCAST
                | Hooks::RETAINED_MESSAGE
                | Hooks::PACKET_RECEIVED
                | Hooks::PACKET_SENT
        ));
        assert!(!EventHook::wants_packets(&m));
        assert!(auth(&m).await);
        assert!(!m.filters_topics());
        let err = PluginManager::builder(&registry, PluginContext::new())
            .spec(PluginSpec::new("nope.Plugin"))
            .build()
            .err()
            .unwrap();
        assert_eq!(err.plugin(), "nope.Plugin");
    }
}
