from pipelines.commands.cli import main

raise SystemExit(main())
