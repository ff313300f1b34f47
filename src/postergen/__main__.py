from postergen.cli import main

raise SystemExit(main())
