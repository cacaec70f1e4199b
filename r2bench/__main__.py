from r2bench.cli import main

raise SystemExit(main())
