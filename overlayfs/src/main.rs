fn main() {
    println!("strata-overlayfs {}", env!("CARGO_PKG_VERSION"));
}
