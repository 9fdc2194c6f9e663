//! Errors raised while building plugins: the counterparts of aMQTT's `PluginImportError`
//! (unknown name), `PluginLoadError` (config of the wrong shape) and `PluginInitError`
//! (the plugin refused to start, e.g. a missing password file).

/// Why a plugin could not be built. Every variant names the plugin.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// No plugin is registered under this name (aMQTT's `PluginImportError`).
    #[error("plugins: `{name}`: unknown plugin (PluginImportError); known plugins: {known}")]
    UnknownPlugin {
        /// The name from the config.
        name: String,
        /// The registered names, comma separated.
        known: String,
    },
    /// The plugin's config section has the wrong shape (aMQTT's `PluginLoadError`).
    #[error("plugins: `{plugin}`: {key}: {message}")]
    Config {
        /// The plugin name.
        plugin: String,
        /// The offending key (`.` when the section itself is wrong).
        key: String,
        /// What was wrong and what was expected.
        message: String,
    },
    /// The plugin could not start (aMQTT's `PluginInitError`).
    #[error("plugins: `{plugin}`: plugin init failed (PluginInitError): {message}")]
    Init {
        /// The plugin name.
        plugin: String,
        /// Why.
        message: String,
    },
    /// A password file could not be read or has a malformed line.
    #[error("plugins: `{plugin}`: {source}")]
    PasswordFile {
        /// The plugin name.
        plugin: String,
        /// The file problem, naming `file:line`.
        #[source]
        source: crate::plugins::password_file::PasswordFileError,
    },
}

impl PluginError {
    /// The plugin this error is about.
    pub fn plugin(&self) -> &str {
        match self {
            PluginError::UnknownPlugin { name, .. } => name,
            PluginError::Config { plugin, .. }
            | PluginError::Init { plugin, .. }
            | PluginError::PasswordFile { plugin, .. } => plugin,
        }
    }

    /// A config error for `plugin` at `key`.
    pub fn config(
        plugin: impl Into<String>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> PluginError {
        PluginError::Config {
            plugin: plugin.into(),
            key: key.into(),
            message: message.into(),
        }
    }

    /// An init error for `plugin`.
    pub fn init(plugin: impl Into<String>, message: impl Into<String>) -> PluginError {
        PluginError::Init {
            plugin: plugin.into(),
            message: message.into(),
        }
    }
}
