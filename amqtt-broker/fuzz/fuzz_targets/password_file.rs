//! Arbitrary text into the password-file parser: it must never panic; a file it accepts has no
//! user without a name or a password (CVE-2018-12551), and writing it back and reading that
//! again gives the same users.
#![no_main]

use std::path::Path;

use amqtt_broker::plugins::password_file::{PasswordFile, Verification};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.passwd");
    let Ok(file) = PasswordFile::parse(text, path) else {
        return;
    };
    let users: Vec<String> = file.users().map(str::to_owned).collect();
    assert_eq!(users.len(), file.len());
    for user in &users {
        assert!(!user.is_empty(), "an empty user name was accepted");
        assert!(!user.contains(':'), "a user name with `:` was accepted");
        assert!(file.contains(user));
    }
    let written = file.to_text();
    let again = match PasswordFile::parse(&written, path) {
        Ok(again) => again,
        Err(e) => panic!("the written file does not parse: {e}\n{written}"),
    };
    let users_again: Vec<&str> = again.users().collect();
    assert_eq!(users_again, users);
    // Verifying an unknown user costs nothing and never matches. (Known users are not verified
    // here: a hash's own cost parameter, e.g. bcrypt 31, is the file author's choice.)
    let stranger = "\u{0}not-a-user";
    assert!(!file.contains(stranger));
    assert_eq!(file.verify(stranger, b"x"), Verification::UnknownUser);
});
