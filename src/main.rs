/// mimalloc instead of the system allocator: the request path allocates and frees dozens of
/// small buffers per request (see docs/benchmarks.md, "Request pipeline v2").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tessera::cli::main()
}
