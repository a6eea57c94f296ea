//! Compiles bpf/redirect.bpf.c with clang into OUT_DIR/redirect.bpf.o (the
//! object src/backend/xdp/bpf.rs loads) and generates its libbpf-rs
//! skeleton (bpf.rs takes only the layout of its read-only data from it).

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const SRC: &str = "bpf/redirect.bpf.c";

fn main() {
    let dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let out = dir.join("redirect.skel.rs");
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    // Debian keeps asm/ headers under the multiarch directory.
    let multiarch = format!("-I/usr/include/{arch}-linux-gnu");
    if let Err(e) = SkeletonBuilder::new()
        .source(SRC)
        .obj(dir.join("redirect.bpf.o"))
        .clang_args([multiarch.as_str(), "-O2", "-g"])
        .build_and_generate(&out)
    {
        panic!(
            "building {SRC} failed: {e:#}\n\
             It needs clang, libelf-dev, zlib1g-dev and pkg-config (scripts/test.sh and scripts/demo.sh install them)."
        );
    }
    println!("cargo:rerun-if-changed={SRC}");
}
