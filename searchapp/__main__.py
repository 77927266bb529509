from searchapp.cli import main

raise SystemExit(main())
