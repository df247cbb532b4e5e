//! Compile the .proto files with a pure-Rust protobuf compiler, so building needs no
//! system `protoc`; the encoded descriptors are kept for gRPC server reflection.

use std::path::PathBuf;

use prost::Message;

const PROTOS: [&str; 3] = [
    "proto/grpc_service.proto",
    "proto/model_config.proto",
    "proto/kiln/v1/tasks.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("kiln_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
