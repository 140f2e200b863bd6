//! The `commons` binary. mimalloc replaces the system allocator: parsing,
//! validating and serializing records allocates many small values, and
//! glibc's malloc spent a tenth of the ingest time consolidating and freeing.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    commons::cli::main()
}
