//! Any bytes as what a server answers on one keep-alive connection: the load generator's
//! HTTP/1.1 response reader (status line, headers, Content-Length, chunked, read-to-close, HEAD,
//! 1xx). Never a panic, never more than the sample asked for.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| chokepoint_load::fuzzing::http1_responses(data));
