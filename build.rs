//! Compiles the eBPF programs with clang into OUT_DIR and generates their
//! libbpf-rs skeletons (only the layout of their read-only data is taken
//! from them): bpf/redirect.bpf.c (the XDP program,
//! src/backend/xdp/bpf.rs) and bpf/offcpu.bpf.c (what took a loop's core,
//! src/sampler/offcpu/).

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const PROGRAMS: [&str; 2] = ["redirect", "offcpu"];

fn main() {
    let dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    // Debian keeps asm/ headers under the multiarch directory.
    let multiarch = format!("-I/usr/include/{arch}-linux-gnu");
    // bpf_tracing.h wants the target's name for its register macros.
    let target = match arch.as_str() {
        "x86_64" => "-D__TARGET_ARCH_x86",
        "aarch64" => "-D__TARGET_ARCH_arm64",
        "riscv64" => "-D__TARGET_ARCH_riscv",
        "powerpc64" => "-D__TARGET_ARCH_powerpc",
        "s390x" => "-D__TARGET_ARCH_s390",
        _ => "-D__TARGET_ARCH_x86",
    };
    for name in PROGRAMS {
        let src = format!("bpf/{name}.bpf.c");
        if let Err(e) = SkeletonBuilder::new()
            .source(&src)
            .obj(dir.join(format!("{name}.bpf.o")))
            .clang_args([multiarch.as_str(), target, "-O2", "-g"])
            .build_and_generate(dir.join(format!("{name}.skel.rs")))
        {
            panic!(
                "building {src} failed: {e:#}\n\
                 It needs clang, libelf-dev, zlib1g-dev and pkg-config (scripts/test.sh and scripts/demo.sh install them)."
            );
        }
        println!("cargo:rerun-if-changed={src}");
    }
}
