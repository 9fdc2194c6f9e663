//! Broker URIs as aMQTT takes them: `mqtt[s]://` and `ws[s]://`, `user:password@` credentials
//! (percent-decoded), default ports 1883, 8883, 80 and 443.

use percent_encoding::percent_decode_str;
use url::Url;

use crate::error::ClientError;

/// The transport a URI asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `mqtt://`: plain TCP (default port 1883).
    Mqtt,
    /// `mqtts://`: TLS over TCP (default port 8883).
    Mqtts,
    /// `ws://`: WebSocket (default port 80).
    Ws,
    /// `wss://`: WebSocket over TLS (default port 443).
    Wss,
}

impl Scheme {
    /// The scheme as written in a URI.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Mqtt => "mqtt",
            Scheme::Mqtts => "mqtts",
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
        }
    }

    /// The port used when the URI names none.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Mqtt => 1883,
            Scheme::Mqtts => 8883,
            Scheme::Ws => 80,
            Scheme::Wss => 443,
        }
    }
}

/// A parsed broker URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerUri {
    /// The transport.
    pub scheme: Scheme,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port (the scheme's default when absent).
    pub port: u16,
    /// User name from the userinfo, percent-decoded.
    pub username: Option<String>,
    /// Password from the userinfo, percent-decoded.
    pub password: Option<String>,
    /// For WebSocket: the URI without userinfo (`ws://host:port/path?query`).
    pub ws_url: String,
}

impl BrokerUri {
    /// Parses `uri`; an unknown scheme or a missing host is [`ClientError::InvalidUri`].
    pub fn parse(uri: &str) -> Result<BrokerUri, ClientError> {
        let bad = |reason: &str| ClientError::InvalidUri {
            uri: uri.to_string(),
            reason: reason.to_string(),
        };
        let url = Url::parse(uri).map_err(|e| bad(&e.to_string()))?;
        let scheme = match url.scheme() {
            "mqtt" | "tcp" => Scheme::Mqtt,
            "mqtts" | "ssl" => Scheme::Mqtts,
            "ws" => Scheme::Ws,
            "wss" => Scheme::Wss,
            other => {
                return Err(bad(&format!(
                    "incorrect scheme '{other}': expected mqtt, mqtts, ws or wss"
                )))
            }
        };
        let host = match url.host() {
            Some(url::Host::Ipv6(addr)) => addr.to_string(),
            Some(host) => host.to_string(),
            None => return Err(bad("no host")),
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = url.port().unwrap_or(scheme.default_port());
        let decode = |s: &str| {
            percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| bad("userinfo is not UTF-8 after percent-decoding"))
        };
        let username = match url.username() {
            "" => None,
            user => Some(decode(user)?),
        };
        let password = url.password().map(decode).transpose()?;
        let mut ws = url.clone();
        // Clearing userinfo only fails for URLs that cannot have it, which a host rules out.
        let _ = ws.set_username("");
        let _ = ws.set_password(None);
        Ok(BrokerUri {
            scheme,
            host,
            port,
            username,
            password,
            ws_url: ws.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqtt_uri_without_port_uses_1883() {
        let u = BrokerUri::parse("mqtt://127.0.0.1").unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port),
            (Scheme::Mqtt, "127.0.0.1", 1883)
        );
        assert_eq!((u.username, u.password), (None, None));
    }

    #[test]
    fn userinfo_is_percent_decoded() {
        let u = BrokerUri::parse("mqtt://u%40x:p%3Aw@broker:1884").unwrap();
        assert_eq!(u.username.as_deref(), Some("u@x"));
        assert_eq!(u.password.as_deref(), Some("p:w"));
        assert_eq!(u.port, 1884);
    }

    #[test]
    fn default_ports_per_scheme() {
        assert_eq!(BrokerUri::parse("mqtts://h").unwrap().port, 8883);
        assert_eq!(BrokerUri::parse("ws://h/mqtt").unwrap().port, 80);
        let wss = BrokerUri::parse("wss://u:p@h/mqtt").unwrap();
        assert_eq!(wss.port, 443);
        assert_eq!(wss.ws_url, "wss://h/mqtt");
    }

    #[test]
    fn ipv6_host_has_no_brackets() {
        assert_eq!(BrokerUri::parse("mqtt://[::1]:1883").unwrap().host, "::1");
    }

    #[test]
    fn unknown_scheme_is_an_error() {
        let err = BrokerUri::parse("http://h").unwrap_err();
        assert!(err.to_string().contains("incorrect scheme 'http'"), "{err}");
        assert!(BrokerUri::parse("not a uri").is_err());
    }
}
