fn main() -> anyhow::Result<()> {
    trading_supervisor::cli::main()
}
