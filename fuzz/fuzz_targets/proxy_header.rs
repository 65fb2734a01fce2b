//! Any bytes as a PROXY protocol header (v1 or v2): a client address, none, or an error;
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = qalxan_gateway::proxy_protocol::parse(data);
});
