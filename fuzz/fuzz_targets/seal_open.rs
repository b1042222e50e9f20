//! `seal::Opener::open` on arbitrary frames, and the seal/open round trip
//! with the fuzzer's bytes as plaintext.
//!
//! Input: the first byte picks a mode, the rest is the data.
//! * 0 (and any unknown mode): open the data as a frame; never panics.
//! * 1: seal the data, open it (must give the data back), open it again
//!   (must be refused as a replay).
//! * 2: seal the data after its first two bytes, flip the frame byte they
//!   name, open: must be refused (the frame was altered).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use scuttlewire::__private::seal::{OpenError, Opener, Sealer};
use scuttlewire::seal::{Cipher, Key, Keyring};

const LABEL: &str = "fuzz";

static KEY: LazyLock<Key> = LazyLock::new(|| Key::from_bytes(&[7; 32]).expect("32 bytes"));

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let keyring = Keyring::new(KEY.clone());
    keyring.install(Key::from_bytes(&[9; 32]).expect("32 bytes"));
    let mut opener = Opener::with_max_sessions(LABEL, 2);
    match mode {
        1 => {
            let mut sealer = sealer(data);
            let Ok(frame) = sealer.seal(&KEY, data) else {
                return;
            };
            assert_eq!(opener.open(&keyring, &frame).as_deref(), Ok(data));
            assert!(matches!(
                opener.open(&keyring, &frame),
                Err(OpenError::Replay { .. })
            ));
        }
        2 if data.len() >= 2 => {
            let (at, plaintext) = data.split_at(2);
            let mut sealer = sealer(plaintext);
            let Ok(mut frame) = sealer.seal(&KEY, plaintext) else {
                return;
            };
            let i = usize::from(u16::from_le_bytes([at[0], at[1]])) % frame.len();
            frame[i] ^= 0x01;
            assert!(
                opener.open(&keyring, &frame).is_err(),
                "altered byte {i} opened"
            );
        }
        _ => {
            let _ = opener.open(&keyring, data);
        }
    }
});

/// A sealer whose cipher depends on the input, to cover all three.
fn sealer(data: &[u8]) -> Sealer {
    let cipher = match data.len() % 3 {
        0 => Cipher::Aes256Gcm,
        1 => Cipher::ChaCha20Poly1305,
        _ => Cipher::XChaCha20Poly1305,
    };
    Sealer::new(cipher, LABEL).expect("OS randomness")
}
