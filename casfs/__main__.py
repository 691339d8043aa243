from casfs.cli import main

raise SystemExit(main())
