from gateway_engine.cli.main import main

main()
