from searchapp.cli.main import main

if __name__ == "__main__":  # spawned model processes must not run the CLI again
    raise SystemExit(main())
