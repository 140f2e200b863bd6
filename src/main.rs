fn main() -> std::process::ExitCode {
    commons::cli::main()
}
