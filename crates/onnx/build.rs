//! Generates the ONNX protobuf types from the vendored `proto/onnx.proto` (ONNX 1.17.0,
//! Apache-2.0) with prost. The schema is parsed by protox, in Rust: no `protoc` needed.

fn main() {
    let proto = "proto/onnx.proto";
    println!("cargo:rerun-if-changed={proto}");
    let files = protox::compile([proto], ["proto"]).expect("proto/onnx.proto parses");
    prost_build::Config::new()
        .compile_fds(files)
        .expect("prost generates the ONNX types");
}
