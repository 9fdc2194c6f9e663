//! Arbitrary text into the YAML config loader: it must never panic, and a config it accepts
//! must pass its own validation and read back the same from its `serde_yaml` value.
#![no_main]

use amqtt_broker::BrokerConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = BrokerConfig::from_yaml_str(text) else {
        return;
    };
    // What the loader accepts is valid: `Broker::new` would not refuse it for its limits or
    // listeners.
    if let Err(e) = config.validate() {
        panic!("accepted a config that fails validation: {e}\n{text}");
    }
    assert!(config.default_listener().is_some(), "no default listener");
    // The same document through `from_yaml_value` gives the same config.
    if let Ok(value) = serde_yaml::from_str::<serde_yaml::Value>(text) {
        let again = BrokerConfig::from_yaml_value(value);
        assert_eq!(
            again.ok().as_ref(),
            Some(&config),
            "from_yaml_value differs"
        );
    }
});
