//! Arbitrary bytes as a safetensors checkpoint: the reader must answer with `Ok` or an
//! error, never panic, hang or allocate beyond the input's size. What it accepts must also
//! be accepted by the reference implementation (so PyTorch can load it), and must survive a
//! write/read round trip bit for bit.
#![no_main]

use dcgan::io::{parse_safetensors, serialize_safetensors};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(parsed) = parse_safetensors(data, "fuzz.safetensors") else { return };
    assert!(
        safetensors::SafeTensors::deserialize(data).is_ok(),
        "accepted a file the reference implementation rejects"
    );
    let bytes = serialize_safetensors(&parsed.tensors, &parsed.metadata);
    let again = parse_safetensors(&bytes, "rewritten").expect("our own output parses");
    assert_eq!(serialize_safetensors(&again.tensors, &again.metadata), bytes, "round trip changed the bytes");
    assert_eq!(again.metadata, parsed.metadata);
});
