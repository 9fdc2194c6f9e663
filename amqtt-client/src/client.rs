//! [`MQTTClient`]: the cheap-to-clone handle applications use.
//!
//! Every method sends a request to the connection task (see `driver.rs`) over a bounded channel
//! and, where there is an answer, waits for it on a oneshot. The handle holds no protocol state
//! and never blocks on the incoming-message queue.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use mqtt_codec::client::ConnectOptions;
use mqtt_codec::session::{Message, SessionLimits};
use mqtt_codec::{KeepAlive, LastWill, QoS, SubAckReturnCode, TopicFilter, TopicName};
use rand::distributions::{Alphanumeric, DistString};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::config::ClientConfig;
use crate::driver::{Command, Connector, Driver, DriverChannels, DriverConfig};
use crate::error::ClientError;
use crate::message::{ApplicationMessage, ConnectOutcome, ConnectionState, Messages, PublishToken};
use crate::plugins::{ClientPlugin, PluginRegistry};
use crate::transport::TransportOptions;
use crate::uri::BrokerUri;

/// An MQTT 3.1.1 client (aMQTT's `MQTTClient`).
///
/// Cheap to clone: every clone drives the same connection. Dropping every clone without
/// calling [`MQTTClient::disconnect`] closes the socket without DISCONNECT, so the broker
/// publishes the will, as the spec requires.
///
/// ```no_run
/// # async fn demo() -> Result<(), amqtt_client::ClientError> {
/// use amqtt_client::{ClientConfig, MQTTClient, QoS};
/// let client = MQTTClient::new(None, ClientConfig::default())?;
/// client.connect("mqtt://127.0.0.1:1883").await?;
/// client.subscribe(&[("sensors/#", QoS::AtLeastOnce)]).await?;
/// client.publish("sensors/1", "21.5", QoS::AtLeastOnce, false).await?;
/// let message = client.deliver_message(None).await?;
/// println!("{}: {:?}", message.topic, message.payload);
/// client.disconnect().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MQTTClient {
    inner: Arc<Inner>,
}

struct Inner {
    client_id: String,
    config: ClientConfig,
    plugins: Mutex<Vec<Arc<dyn ClientPlugin>>>,
    state: Arc<watch::Sender<ConnectionState>>,
    // std Mutex: held only to clone or swap the link, never across an await.
    link: Mutex<Option<Link>>,
}

/// The channels to one running connection task.
struct Link {
    commands: mpsc::Sender<Command>,
    messages: Arc<tokio::sync::Mutex<mpsc::Receiver<ApplicationMessage>>>,
    stop: CancellationToken,
    _stop_on_drop: DropGuard,
}

/// Options of [`MQTTClient::connect_with`] that aMQTT's `connect()` takes besides the URI.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectParams {
    /// Overrides `cleansession` from the config.
    pub cleansession: Option<bool>,
    /// CA file for TLS (overrides `connection.cafile`).
    pub cafile: Option<String>,
    /// CA directory for TLS.
    pub capath: Option<String>,
    /// CA certificates as PEM text.
    pub cadata: Option<String>,
    /// Extra HTTP headers for the WebSocket handshake.
    pub additional_headers: Vec<(String, String)>,
}

impl MQTTClient {
    /// A client with `client_id` (none: `amqtt/` and 16 random alphanumerics, as aMQTT) and
    /// `config`, its plugins built from the packaged [`PluginRegistry`]. Does no IO.
    ///
    /// Fails when the config is invalid or names an unknown plugin.
    pub fn new(client_id: Option<String>, config: ClientConfig) -> Result<MQTTClient, ClientError> {
        Self::with_registry(client_id, config, &PluginRegistry::default())
    }

    /// Like [`MQTTClient::new`], with the plugins resolved in `registry` (register your own
    /// plugins there).
    pub fn with_registry(
        client_id: Option<String>,
        config: ClientConfig,
        registry: &PluginRegistry,
    ) -> Result<MQTTClient, ClientError> {
        config.validate()?;
        let plugins = registry.build(&config.plugins)?;
        let client_id = client_id.unwrap_or_else(|| {
            format!(
                "amqtt/{}",
                Alphanumeric.sample_string(&mut rand::thread_rng(), 16)
            )
        });
        let (state, _) = watch::channel(ConnectionState::Idle);
        Ok(MQTTClient {
            inner: Arc::new(Inner {
                client_id,
                config,
                plugins: Mutex::new(plugins),
                state: Arc::new(state),
                link: Mutex::new(None),
            }),
        })
    }

    /// Adds a plugin instance; it takes effect at the next `connect`.
    pub fn add_plugin(&self, plugin: Arc<dyn ClientPlugin>) {
        lock(&self.inner.plugins).push(plugin);
    }

    /// The client identifier sent in CONNECT.
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Connects to `uri` (`mqtt://[user:password@]host[:port]`; none: `connection.uri` from the
    /// config) and waits for CONNACK. With `auto_reconnect`, a failure to reach the broker is
    /// retried as aMQTT does (`reconnect_retries` more attempts with backoff) before it is
    /// returned; a refused CONNACK is returned at once as [`ClientError::Refused`], and a
    /// certificate refused by either side (untrusted CA, host name not in the certificate,
    /// client certificate rejected by the broker) at once as [`ClientError::Tls`].
    ///
    /// After it succeeds the connection is kept up in the background: lost connections are
    /// re-established per `auto_reconnect`; see [`MQTTClient::state`].
    ///
    /// Cancel-safety: not cancel-safe. Dropping the future stops the connection attempt only
    /// once the task notices it has no handle left; call [`MQTTClient::disconnect`] instead.
    pub async fn connect<'a>(
        &self,
        uri: impl Into<Option<&'a str>>,
    ) -> Result<ConnectOutcome, ClientError> {
        self.connect_with(uri, ConnectParams::default()).await
    }

    /// [`MQTTClient::connect`] with aMQTT's other `connect()` arguments.
    ///
    /// Cancel-safety: not cancel-safe (see [`MQTTClient::connect`]).
    pub async fn connect_with<'a>(
        &self,
        uri: impl Into<Option<&'a str>>,
        params: ConnectParams,
    ) -> Result<ConnectOutcome, ClientError> {
        let config = &self.inner.config;
        let connection = config.effective_connection().clone();
        let uri = uri.into().unwrap_or(&connection.uri).to_string();
        let uri = BrokerUri::parse(&uri)?;
        let mut connection = connection;
        if params.cafile.is_some() {
            connection.cafile = params.cafile;
        }
        if params.capath.is_some() {
            connection.capath = params.capath;
        }
        if params.cadata.is_some() {
            connection.cadata = params.cadata;
        }
        // TLS files are read once, here: a bad file fails at once instead of being retried.
        let transport = TransportOptions::new(
            &uri,
            &connection,
            config.check_hostname,
            config.verify_cert,
            params.additional_headers,
        )?;
        let options = self.connect_options(&uri, params.cleansession)?;
        let connector = Connector::Uri {
            uri,
            transport,
            timeout: config.connection_timeout,
        };
        self.start(connector, options).await
    }

    async fn start(
        &self,
        connector: Connector,
        options: ConnectOptions,
    ) -> Result<ConnectOutcome, ClientError> {
        let config = &self.inner.config;
        let (command_tx, command_rx) = mpsc::channel(config.request_queue_size);
        let (message_tx, message_rx) = mpsc::channel(config.incoming_queue_size);
        let (first_tx, first_rx) = oneshot::channel();
        let stop = CancellationToken::new();
        {
            let mut link = lock(&self.inner.link);
            if link.as_ref().is_some_and(|l| !l.commands.is_closed()) {
                return Err(ClientError::AlreadyConnected);
            }
            *link = Some(Link {
                commands: command_tx,
                messages: Arc::new(tokio::sync::Mutex::new(message_rx)),
                stop: stop.clone(),
                _stop_on_drop: stop.clone().drop_guard(),
            });
        }
        let driver_config = DriverConfig {
            connector,
            options,
            limits: SessionLimits {
                max_inflight: config.max_inflight,
                max_queued_messages: config.max_queued_messages,
                // The cap on incoming QoS 2 ids awaiting PUBREL protects a broker from its
                // clients. A client trusts its broker, and brokers legitimately pipeline more
                // than the default 100 (PUBRELs queue behind PUBLISHes), so allow every packet
                // id: the set stays bounded by the 65,535 ids that exist.
                max_incoming_unreleased: usize::from(u16::MAX),
                ..SessionLimits::default()
            },
            auto_reconnect: config.auto_reconnect,
            reconnect_retries: config.reconnect_retries,
            reconnect_max_interval: config.reconnect_max_interval,
            incoming_buffer_size: config.incoming_buffer_size,
        };
        let plugins = lock(&self.inner.plugins).clone();
        let driver = Driver::new(
            driver_config,
            plugins,
            DriverChannels {
                commands: command_rx,
                messages: message_tx,
                state: self.inner.state.clone(),
                stop,
                first: first_tx,
            },
        );
        tokio::spawn(driver.run());
        let outcome = first_rx.await.unwrap_or(Err(ClientError::NotConnected));
        if outcome.is_err() {
            lock(&self.inner.link).take();
        }
        outcome
    }

    fn connect_options(
        &self,
        uri: &BrokerUri,
        cleansession: Option<bool>,
    ) -> Result<ConnectOptions, ClientError> {
        let config = &self.inner.config;
        let mut options = ConnectOptions::new(self.inner.client_id.clone());
        options.keep_alive = KeepAlive::from_secs(config.connect_keep_alive());
        options.clean_session = cleansession.unwrap_or(config.cleansession);
        options.username = uri.username.clone();
        options.password = uri.password.clone().map(Bytes::from);
        options.response_timeout = config.response_timeout;
        options.protocol = config.protocol_version;
        if let Some(will) = &config.will {
            let topic = TopicName::new(will.topic.as_str()).map_err(|source| {
                ClientError::InvalidTopic {
                    topic: will.topic.clone(),
                    source,
                }
            })?;
            options.will = Some(LastWill {
                topic,
                payload: Bytes::from(will.message.clone().into_bytes()),
                qos: will.qos,
                retain: will.retain,
            });
        }
        Ok(options)
    }

    /// Publishes `payload` to `topic` and waits until the QoS flow is complete (QoS 0: written
    /// to the socket; 1: PUBACK; 2: PUBCOMP). `qos`/`retain` given as `None` take the `topics`
    /// entry of the config, else `default_qos`/`default_retain` (unlike aMQTT, an explicit
    /// `false` retain is honoured).
    ///
    /// While the client is reconnecting the request waits in the bounded request queue and
    /// goes out once the connection is back; QoS 1/2 publishes in flight when a connection is
    /// lost are retransmitted after reconnecting.
    ///
    /// Cancel-safety: cancel-safe in the sense that dropping the future never leaves the
    /// client inconsistent; but once the request was queued the message is still published.
    pub async fn publish(
        &self,
        topic: impl AsRef<str>,
        payload: impl Into<Bytes>,
        qos: impl Into<Option<QoS>>,
        retain: impl Into<Option<bool>>,
    ) -> Result<(), ClientError> {
        self.start_publish(topic, payload, qos, retain).await?.await
    }

    /// Queues a publish, waiting only for room in the request queue, and returns the token that
    /// resolves when its QoS flow completes. Publishes queued one after the other go out in
    /// that order; use this to pipeline many publishes without a task per message.
    ///
    /// Cancel-safety: cancel-safe: if the future is dropped before it returns, the message was
    /// not queued.
    pub async fn start_publish(
        &self,
        topic: impl AsRef<str>,
        payload: impl Into<Bytes>,
        qos: impl Into<Option<QoS>>,
        retain: impl Into<Option<bool>>,
    ) -> Result<PublishToken, ClientError> {
        let message = self.message(topic.as_ref(), payload.into(), qos.into(), retain.into())?;
        let (reply, token) = oneshot::channel();
        self.send(Command::Publish {
            message,
            reply: Some(reply),
        })
        .await?;
        Ok(PublishToken { reply: token })
    }

    /// Queues a publish without waiting: fails at once with [`ClientError::QueueFull`]
    /// (carrying the message) when the request queue is full. The returned token resolves
    /// when the QoS flow completes; dropping it does not cancel the publish.
    pub fn try_publish(
        &self,
        topic: impl AsRef<str>,
        payload: impl Into<Bytes>,
        qos: impl Into<Option<QoS>>,
        retain: impl Into<Option<bool>>,
    ) -> Result<PublishToken, ClientError> {
        let message = self.message(topic.as_ref(), payload.into(), qos.into(), retain.into())?;
        let (reply, token) = oneshot::channel();
        let commands = self.commands()?;
        match commands.try_send(Command::Publish {
            message,
            reply: Some(reply),
        }) {
            Ok(()) => Ok(PublishToken { reply: token }),
            Err(mpsc::error::TrySendError::Full(Command::Publish { message, .. })) => {
                Err(ClientError::QueueFull(Box::new(message)))
            }
            Err(_) => Err(ClientError::NotConnected),
        }
    }

    /// Subscribes to `filters` (each with its requested QoS) in one SUBSCRIBE and returns the
    /// SUBACK's return codes in order ([`SubAckReturnCode::Failure`] is 0x80). Granted filters
    /// are re-subscribed automatically after a reconnect that finds no session.
    ///
    /// Cancel-safety: once queued the SUBSCRIBE is sent even if the future is dropped.
    pub async fn subscribe<S: AsRef<str>>(
        &self,
        filters: &[(S, QoS)],
    ) -> Result<Vec<SubAckReturnCode>, ClientError> {
        let filters = filters
            .iter()
            .map(|(f, q)| Ok((parse_filter(f.as_ref())?, *q)))
            .collect::<Result<Vec<_>, ClientError>>()?;
        if filters.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.send(Command::Subscribe { filters, reply }).await?;
        answer.await.unwrap_or(Err(ClientError::NotConnected))
    }

    /// Unsubscribes from `filters` and waits for UNSUBACK.
    ///
    /// Cancel-safety: once queued the UNSUBSCRIBE is sent even if the future is dropped.
    pub async fn unsubscribe<S: AsRef<str>>(&self, filters: &[S]) -> Result<(), ClientError> {
        let filters = filters
            .iter()
            .map(|f| parse_filter(f.as_ref()))
            .collect::<Result<Vec<_>, ClientError>>()?;
        if filters.is_empty() {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        self.send(Command::Unsubscribe { filters, reply }).await?;
        answer.await.unwrap_or(Err(ClientError::NotConnected))
    }

    /// Sends PINGREQ and waits for PINGRESP.
    ///
    /// Cancel-safety: cancel-safe.
    pub async fn ping(&self) -> Result<(), ClientError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Ping { reply }).await?;
        answer.await.unwrap_or(Err(ClientError::NotConnected))
    }

    /// The next received message; waits at most `timeout` when one is given
    /// ([`ClientError::Timeout`]). [`ClientError::NotConnected`] once the client is
    /// disconnected and every received message has been delivered.
    ///
    /// Cancel-safety: cancel-safe; no message is lost when the future is dropped.
    pub async fn deliver_message(
        &self,
        timeout: Option<Duration>,
    ) -> Result<ApplicationMessage, ClientError> {
        let messages = self.messages_receiver()?;
        let receive = async {
            let mut receiver = messages.lock().await;
            receiver.recv().await.ok_or(ClientError::NotConnected)
        };
        match timeout {
            Some(timeout) => tokio::time::timeout(timeout, receive)
                .await
                .unwrap_or(Err(ClientError::Timeout)),
            None => receive.await,
        }
    }

    /// The received messages as a [`Stream`](futures_util::Stream); it ends when the client is disconnected.
    /// Shares the queue with [`MQTTClient::deliver_message`]: each message goes to one of them.
    /// Empty when the client is not connected.
    pub fn messages(&self) -> Messages {
        let receiver = self.messages_receiver().ok();
        Messages(Box::pin(futures_util::stream::unfold(
            receiver,
            |receiver| async move {
                let shared = receiver?;
                let message = shared.lock().await.recv().await?;
                Some((message, Some(shared)))
            },
        )))
    }

    /// A watch on the connection state: `Connected`, `Lost`, `Reconnected { session_present }`…
    pub fn state(&self) -> watch::Receiver<ConnectionState> {
        self.inner.state.subscribe()
    }

    /// Whether a connection is up right now.
    pub fn is_connected(&self) -> bool {
        self.inner.state.borrow().is_connected()
    }

    /// Sends DISCONNECT and closes the connection, after waiting (up to the config's
    /// `disconnect_timeout`) for queued QoS 1/2 publishes to be acknowledged. Stops
    /// reconnecting; the message stream ends once drained. A warning only if not connected.
    ///
    /// Cancel-safety: not cancel-safe: dropping the future may leave the connection open until
    /// the deadline passes.
    pub async fn disconnect(&self) -> Result<(), ClientError> {
        self.disconnect_timeout(self.inner.config.disconnect_timeout)
            .await
    }

    /// [`MQTTClient::disconnect`] with an explicit deadline for queued QoS 1/2 publishes.
    ///
    /// Cancel-safety: not cancel-safe (see [`MQTTClient::disconnect`]).
    pub async fn disconnect_timeout(&self, timeout: Duration) -> Result<(), ClientError> {
        let Some(link) = lock(&self.inner.link).take() else {
            tracing::warn!("disconnect: the client is not connected");
            return Ok(());
        };
        let result = if self.is_connected() {
            let (reply, answer) = oneshot::channel();
            let request = Command::Disconnect { timeout, reply };
            // A little slack over the deadline for the DISCONNECT to be written.
            let limit = timeout + Duration::from_secs(1);
            match tokio::time::timeout(limit, async {
                link.commands
                    .send(request)
                    .await
                    .map_err(|_| ClientError::NotConnected)?;
                answer.await.unwrap_or(Err(ClientError::NotConnected))
            })
            .await
            {
                Ok(result) => result,
                Err(_) => Err(ClientError::DisconnectTimeout(0)),
            }
        } else {
            Ok(())
        };
        link.stop.cancel();
        if matches!(result, Err(ClientError::NotConnected)) {
            return Ok(());
        }
        result
    }

    fn message(
        &self,
        topic: &str,
        payload: Bytes,
        qos: Option<QoS>,
        retain: Option<bool>,
    ) -> Result<Message, ClientError> {
        let topic_name = TopicName::new(topic).map_err(|source| ClientError::InvalidTopic {
            topic: topic.to_string(),
            source,
        })?;
        let (default_qos, default_retain) = self.inner.config.publish_defaults(topic);
        Ok(Message {
            topic: topic_name,
            payload,
            qos: qos.unwrap_or(default_qos),
            retain: retain.unwrap_or(default_retain),
        })
    }

    fn commands(&self) -> Result<mpsc::Sender<Command>, ClientError> {
        lock(&self.inner.link)
            .as_ref()
            .map(|l| l.commands.clone())
            .ok_or(ClientError::NotConnected)
    }

    fn messages_receiver(
        &self,
    ) -> Result<Arc<tokio::sync::Mutex<mpsc::Receiver<ApplicationMessage>>>, ClientError> {
        lock(&self.inner.link)
            .as_ref()
            .map(|l| l.messages.clone())
            .ok_or(ClientError::NotConnected)
    }

    async fn send(&self, command: Command) -> Result<(), ClientError> {
        self.commands()?
            .send(command)
            .await
            .map_err(|_| ClientError::NotConnected)
    }
}

impl std::fmt::Debug for MQTTClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MQTTClient")
            .field("client_id", &self.inner.client_id)
            .field("state", &*self.inner.state.borrow())
            .finish()
    }
}

fn parse_filter(filter: &str) -> Result<TopicFilter, ClientError> {
    TopicFilter::new(filter).map_err(|source| ClientError::InvalidTopic {
        topic: filter.to_string(),
        source,
    })
}

/// Locks a mutex whose critical sections cannot panic; a poisoned lock is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
