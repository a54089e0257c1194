// Exports engine::blas's `cblas_sgemm` from this package's binaries, tests
// and benches, so libmlx.so's float32 matmuls bind to it (see that module).
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg=-Wl,--export-dynamic-symbol=cblas_sgemm");
    }
}
