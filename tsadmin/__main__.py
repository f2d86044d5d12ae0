from tsadmin.app import main

main()
