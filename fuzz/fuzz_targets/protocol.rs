//! Fuzz target `protocol`: the bytes as one executor-protocol frame, both
//! as a request (what an executor reads) and as a reply (what the linker
//! reads), bare and behind a length prefix. Decoding must never panic,
//! whatever decodes must encode to a frame that decodes to the same value,
//! and the executor's decoding (which leaves a write's bytes in the frame)
//! must read every frame as `Request::decode` does. Read as a stream, the
//! executor's reading (which leaves a lone write's bytes in the stream)
//! must read the frame as `read_frame` does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use solder_executor::protocol::{Reply, Request, decoded_alike, read_alike, read_frame};

fuzz_target!(|data: &[u8]| {
    body(data);
    // The same bytes as a stream: a length prefix, then a frame.
    assert!(read_alike(data), "a lone write's head is read as its frame");
    let mut stream = data;
    if let Ok(frame) = read_frame(&mut stream) {
        body(&frame);
    }
});

/// Decodes `frame` (tag and body) both ways, round-tripping what decodes.
fn body(frame: &[u8]) {
    assert!(decoded_alike(frame), "the executor decodes as Request::decode does");
    if let Ok(request) = Request::decode(frame) {
        let encoded = request.encode();
        assert_prefix(&encoded);
        let again = Request::decode(&encoded[4..]).expect("a re-encoded request decodes");
        assert_eq!(again, request, "a request round trips");
    }
    if let Ok(reply) = Reply::decode(frame) {
        let encoded = reply.encode();
        assert_prefix(&encoded);
        let again = Reply::decode(&encoded[4..]).expect("a re-encoded reply decodes");
        assert_eq!(again, reply, "a reply round trips");
    }
}

/// An encoded frame's length prefix counts the bytes after it.
fn assert_prefix(encoded: &[u8]) {
    let prefix = u32::from_le_bytes(encoded[..4].try_into().expect("a length prefix"));
    assert_eq!(prefix as usize, encoded.len() - 4, "the length prefix");
}
