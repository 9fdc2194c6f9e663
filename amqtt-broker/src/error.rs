//! The broker's error types: [`BrokerError`] for running a broker, [`ConfigError`] for reading
//! its configuration. A config error always names the file (when there is one), the key's path
//! and what was expected, so a user can fix it from the one line it prints.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A configuration problem: where it is and what was expected.
///
/// Displayed as `FILE: KEY: PROBLEM`, e.g.
/// `broker.yaml: listeners.default.bind: expected "host:port", got 1883 (a number)`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}", file_prefix(.file), if .key.is_empty() { "(top level)" } else { .key.as_str() })]
pub struct ConfigError {
    /// The file the config came from, when it came from a file.
    pub file: Option<PathBuf>,
    /// The dotted path of the offending key (`listeners.default.bind`); empty for the top level.
    pub key: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl ConfigError {
    /// An error at `key` (a dotted path) with `message`; the file is filled in by the loader.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: None,
            key: key.into(),
            message: message.into(),
        }
    }

    /// The same error, attributed to `file`.
    pub fn in_file(mut self, file: impl Into<PathBuf>) -> ConfigError {
        self.file = Some(file.into());
        self
    }
}

fn file_prefix(file: &Option<PathBuf>) -> String {
    match file {
        Some(path) => format!("{}: ", path.display()),
        None => String::new(),
    }
}

/// Why the broker could not be built, started or asked to serve a connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not bind its address.
    #[error("listener '{listener}': cannot listen on {bind}: {source}")]
    Bind {
        /// The listener's name in the config.
        listener: String,
        /// The address as configured.
        bind: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A bind address resolved to nothing.
    #[error("listener '{listener}': {bind} does not resolve to any address")]
    Resolve {
        /// The listener's name in the config.
        listener: String,
        /// The address as configured.
        bind: String,
    },
    /// `external_connected` named a listener the config does not have.
    #[error("unknown listener '{0}'")]
    UnknownListener(String),
    /// `start` was called on a broker that is already started (or stopped).
    #[error("the broker cannot be started: it is {0}")]
    InvalidState(&'static str),
    /// A listener's connection limit is reached; the connection was closed.
    #[error("listener '{listener}': connection limit of {max} reached, refused {peer:?}")]
    TooManyConnections {
        /// The listener's name.
        listener: String,
        /// Its `max_connections`.
        max: usize,
        /// The refused peer, when known.
        peer: Option<SocketAddr>,
    },
    /// Another IO error.
    #[error(transparent)]
    Io(#[from] io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_error_names_file_key_and_problem() {
        let err =
            ConfigError::new("listeners.default.bind", "expected \"host:port\"").in_file("b.yaml");
        assert_eq!(
            err.to_string(),
            "b.yaml: listeners.default.bind: expected \"host:port\""
        );
    }

    #[test]
    fn config_error_without_file_or_key_still_reads() {
        let err = ConfigError::new("", "expected a mapping");
        assert_eq!(err.to_string(), "(top level): expected a mapping");
    }
}
