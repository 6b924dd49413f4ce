//! Generates the gRPC code from `proto/` without a system `protoc`: protox compiles the
//! .proto files in Rust and tonic-prost-build generates from the descriptor set.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["../proto/admin.proto", "../proto/raft.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let descriptors = protox::compile(protos, ["../proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
