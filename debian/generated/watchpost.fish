# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_watchpost_global_optspecs
    string join \n c/config= log-format= log-level= h/help V/version
end

function __fish_watchpost_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_watchpost_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_watchpost_using_subcommand
    set -l cmd (__fish_watchpost_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c watchpost -n "__fish_watchpost_needs_command" -s c -l config -d 'Config file (default: $WATCHPOST_CONFIG, else /etc/watchpost/watchpost.toml). Given (or in $WATCHPOST_CONFIG) with no command, runs the daemon; with neither, `watchpost` prints this help' -r -F
complete -c watchpost -n "__fish_watchpost_needs_command" -l log-format -d 'Log format' -r -f -a "text\t'One human-readable line per event'
json\t'One JSON object per event'"
complete -c watchpost -n "__fish_watchpost_needs_command" -l log-level -d 'Default log filter (RUST_LOG overrides it)' -r
complete -c watchpost -n "__fish_watchpost_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c watchpost -n "__fish_watchpost_needs_command" -s V -l version -d 'Print version'
complete -c watchpost -n "__fish_watchpost_needs_command" -f -a "run" -d 'Run the daemon'
complete -c watchpost -n "__fish_watchpost_needs_command" -f -a "check-config" -d 'Validate a config file: print `ok`, or every problem with file:line:column and key path'
complete -c watchpost -n "__fish_watchpost_needs_command" -f -a "schema" -d 'Print the config file\'s JSON Schema (for editors: Taplo / Even Better TOML; see the README)'
complete -c watchpost -n "__fish_watchpost_needs_command" -f -a "config" -d 'Remote settings: `config reset-remote` removes overrides set through the device shadow'
complete -c watchpost -n "__fish_watchpost_needs_command" -f -a "read" -d 'Read sensors once and print decoded values with the raw registers or bytes — for commissioning'
complete -c watchpost -n "__fish_watchpost_needs_command" -f -a "scan" -d 'Find devices on a bus'
complete -c watchpost -n "__fish_watchpost_needs_command" -f -a "buffer" -d 'Inspect the local buffer'
complete -c watchpost -n "__fish_watchpost_needs_command" -f -a "alarms" -d 'Alarm-system performance: `alarms report` prints the alarm KPIs of a period from the local store'
complete -c watchpost -n "__fish_watchpost_needs_command" -f -a "alerts" -d 'Watch a gateway\'s alerts on the broker (the standing ones first, then live), or acknowledge, shelve and take sensors out of service (`[mqtt.commands]` on the gateway)'
complete -c watchpost -n "__fish_watchpost_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c watchpost -n "__fish_watchpost_using_subcommand run" -s c -l config -d 'Config file (default: $WATCHPOST_CONFIG, else /etc/watchpost/watchpost.toml). Given (or in $WATCHPOST_CONFIG) with no command, runs the daemon; with neither, `watchpost` prints this help' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand run" -l log-format -d 'Log format' -r -f -a "text\t'One human-readable line per event'
json\t'One JSON object per event'"
complete -c watchpost -n "__fish_watchpost_using_subcommand run" -l log-level -d 'Default log filter (RUST_LOG overrides it)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c watchpost -n "__fish_watchpost_using_subcommand check-config" -s c -l config -d 'Config file (default: $WATCHPOST_CONFIG, else /etc/watchpost/watchpost.toml). Given (or in $WATCHPOST_CONFIG) with no command, runs the daemon; with neither, `watchpost` prints this help' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand check-config" -l log-format -d 'Log format' -r -f -a "text\t'One human-readable line per event'
json\t'One JSON object per event'"
complete -c watchpost -n "__fish_watchpost_using_subcommand check-config" -l log-level -d 'Default log filter (RUST_LOG overrides it)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand check-config" -l effective -d 'Also list the alarm settings remote changes override (the overlay in the data directory)'
complete -c watchpost -n "__fish_watchpost_using_subcommand check-config" -l file-only -d 'Check the file alone, not the secrets, certificates and devices it names (e.g. on a workstation before deploying it; the unit\'s ExecStartPre, so that a missing certificate stops one sink, not the buffering)'
complete -c watchpost -n "__fish_watchpost_using_subcommand check-config" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c watchpost -n "__fish_watchpost_using_subcommand schema" -s c -l config -d 'Config file (default: $WATCHPOST_CONFIG, else /etc/watchpost/watchpost.toml). Given (or in $WATCHPOST_CONFIG) with no command, runs the daemon; with neither, `watchpost` prints this help' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand schema" -l log-format -d 'Log format' -r -f -a "text\t'One human-readable line per event'
json\t'One JSON object per event'"
complete -c watchpost -n "__fish_watchpost_using_subcommand schema" -l log-level -d 'Default log filter (RUST_LOG overrides it)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand schema" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c watchpost -n "__fish_watchpost_using_subcommand config; and not __fish_seen_subcommand_from reset-remote help" -s c -l config -d 'Config file (default: $WATCHPOST_CONFIG, else /etc/watchpost/watchpost.toml). Given (or in $WATCHPOST_CONFIG) with no command, runs the daemon; with neither, `watchpost` prints this help' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand config; and not __fish_seen_subcommand_from reset-remote help" -l log-format -d 'Log format' -r -f -a "text\t'One human-readable line per event'
json\t'One JSON object per event'"
complete -c watchpost -n "__fish_watchpost_using_subcommand config; and not __fish_seen_subcommand_from reset-remote help" -l log-level -d 'Default log filter (RUST_LOG overrides it)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand config; and not __fish_seen_subcommand_from reset-remote help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c watchpost -n "__fish_watchpost_using_subcommand config; and not __fish_seen_subcommand_from reset-remote help" -f -a "reset-remote" -d 'Remove remote alarm settings (all, or one sensor\'s, or one key); then reload the daemon (`systemctl reload watchpost`). Clear the shadow\'s `desired` too, or it sets them again'
complete -c watchpost -n "__fish_watchpost_using_subcommand config; and not __fish_seen_subcommand_from reset-remote help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c watchpost -n "__fish_watchpost_using_subcommand config; and __fish_seen_subcommand_from reset-remote" -l sensor -d 'Only this sensor' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand config; and __fish_seen_subcommand_from reset-remote" -l key -d 'Only this key (with --sensor), e.g. warning or delay' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand config; and __fish_seen_subcommand_from reset-remote" -s c -l config -d 'Config file (default: $WATCHPOST_CONFIG, else /etc/watchpost/watchpost.toml). Given (or in $WATCHPOST_CONFIG) with no command, runs the daemon; with neither, `watchpost` prints this help' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand config; and __fish_seen_subcommand_from reset-remote" -l log-format -d 'Log format' -r -f -a "text\t'One human-readable line per event'
json\t'One JSON object per event'"
complete -c watchpost -n "__fish_watchpost_using_subcommand config; and __fish_seen_subcommand_from reset-remote" -l log-level -d 'Default log filter (RUST_LOG overrides it)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand config; and __fish_seen_subcommand_from reset-remote" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c watchpost -n "__fish_watchpost_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "reset-remote" -d 'Remove remote alarm settings (all, or one sensor\'s, or one key); then reload the daemon (`systemctl reload watchpost`). Clear the shadow\'s `desired` too, or it sets them again'
complete -c watchpost -n "__fish_watchpost_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c watchpost -n "__fish_watchpost_using_subcommand read" -s c -l config -d 'Config file (default: $WATCHPOST_CONFIG, else /etc/watchpost/watchpost.toml). Given (or in $WATCHPOST_CONFIG) with no command, runs the daemon; with neither, `watchpost` prints this help' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand read" -l log-format -d 'Log format' -r -f -a "text\t'One human-readable line per event'
json\t'One JSON object per event'"
complete -c watchpost -n "__fish_watchpost_using_subcommand read" -l log-level -d 'Default log filter (RUST_LOG overrides it)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand read" -l json -d 'Print JSON (`{"sensor": value}`)'
complete -c watchpost -n "__fish_watchpost_using_subcommand read" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c watchpost -n "__fish_watchpost_using_subcommand scan; and not __fish_seen_subcommand_from i2c modbus help" -s c -l config -d 'Config file (default: $WATCHPOST_CONFIG, else /etc/watchpost/watchpost.toml). Given (or in $WATCHPOST_CONFIG) with no command, runs the daemon; with neither, `watchpost` prints this help' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand scan; and not __fish_seen_subcommand_from i2c modbus help" -l log-format -d 'Log format' -r -f -a "text\t'One human-readable line per event'
json\t'One JSON object per event'"
complete -c watchpost -n "__fish_watchpost_using_subcommand scan; and not __fish_seen_subcommand_from i2c modbus help" -l log-level -d 'Default log filter (RUST_LOG overrides it)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand scan; and not __fish_seen_subcommand_from i2c modbus help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c watchpost -n "__fish_watchpost_using_subcommand scan; and not __fish_seen_subcommand_from i2c modbus help" -f -a "i2c" -d 'Which addresses answer on an I2C bus (probed like i2cdetect), with the likely chip'
complete -c watchpost -n "__fish_watchpost_using_subcommand scan; and not __fish_seen_subcommand_from i2c modbus help" -f -a "modbus" -d 'Which Modbus units answer, with the registers shown in every decoding'
complete -c watchpost -n "__fish_watchpost_using_subcommand scan; and not __fish_seen_subcommand_from i2c modbus help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c watchpost -n "__fish_watchpost_using_subcommand scan; and __fish_seen_subcommand_from i2c" -l bus -d 'The bus device, e.g. /dev/i2c-1' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand scan; and __fish_seen_subcommand_from i2c" -s c -l config -d 'Config file (default: $WATCHPOST_CONFIG, else /etc/watchpost/watchpost.toml). Given (or in $WATCHPOST_CONFIG) with no command, runs the daemon; with neither, `watchpost` prints this help' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand scan; and __fish_seen_subcommand_from i2c" -l log-format -d 'Log format' -r -f -a "text\t'One human-readable line per event'
json\t'One JSON object per event'"
complete -c watchpost -n "__fish_watchpost_using_subcommand scan; and __fish_seen_subcommand_from i2c" -l log-level -d 'Default log filter (RUST_LOG overrides it)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand scan; and __fish_seen_subcommand_from i2c" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c watchpost -n "__fish_watchpost_using_subcommand scan; and __fish_seen_subcommand_from modbus" -l url -d 'tcp://HOST:PORT or rtu:///dev/ttyUSB0?baud=9600&parity=N' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand scan; and __fish_seen_subcommand_from modbus" -l units -d 'Unit ids, e.g. `1-247` or `1,2,5-9`' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand scan; and __fish_seen_subcommand_from modbus" -l table -d 'Table: holding, input, coil, discrete' -r -f -a "holding\t''
input\t''
coil\t''
discrete\t''"
complete -c watchpost -n "__fish_watchpost_using_subcommand scan; and __fish_seen_subcommand_from modbus" -l address -d 'First (0-based) address' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand scan; and __fish_seen_subcommand_from modbus" -l count -d 'Registers to read' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand scan; and __fish_seen_subcommand_from modbus" -l timeout -d 'Per-unit timeout' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand scan; and __fish_seen_subcommand_from modbus" -s c -l config -d 'Config file (default: $WATCHPOST_CONFIG, else /etc/watchpost/watchpost.toml). Given (or in $WATCHPOST_CONFIG) with no command, runs the daemon; with neither, `watchpost` prints this help' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand scan; and __fish_seen_subcommand_from modbus" -l log-format -d 'Log format' -r -f -a "text\t'One human-readable line per event'
json\t'One JSON object per event'"
complete -c watchpost -n "__fish_watchpost_using_subcommand scan; and __fish_seen_subcommand_from modbus" -l log-level -d 'Default log filter (RUST_LOG overrides it)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand scan; and __fish_seen_subcommand_from modbus" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c watchpost -n "__fish_watchpost_using_subcommand scan; and __fish_seen_subcommand_from help" -f -a "i2c" -d 'Which addresses answer on an I2C bus (probed like i2cdetect), with the likely chip'
complete -c watchpost -n "__fish_watchpost_using_subcommand scan; and __fish_seen_subcommand_from help" -f -a "modbus" -d 'Which Modbus units answer, with the registers shown in every decoding'
complete -c watchpost -n "__fish_watchpost_using_subcommand scan; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c watchpost -n "__fish_watchpost_using_subcommand buffer; and not __fish_seen_subcommand_from status export help" -s c -l config -d 'Config file (default: $WATCHPOST_CONFIG, else /etc/watchpost/watchpost.toml). Given (or in $WATCHPOST_CONFIG) with no command, runs the daemon; with neither, `watchpost` prints this help' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand buffer; and not __fish_seen_subcommand_from status export help" -l log-format -d 'Log format' -r -f -a "text\t'One human-readable line per event'
json\t'One JSON object per event'"
complete -c watchpost -n "__fish_watchpost_using_subcommand buffer; and not __fish_seen_subcommand_from status export help" -l log-level -d 'Default log filter (RUST_LOG overrides it)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand buffer; and not __fish_seen_subcommand_from status export help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c watchpost -n "__fish_watchpost_using_subcommand buffer; and not __fish_seen_subcommand_from status export help" -f -a "status" -d 'Size, backlog per sink, oldest undelivered age, drops'
complete -c watchpost -n "__fish_watchpost_using_subcommand buffer; and not __fish_seen_subcommand_from status export help" -f -a "export" -d 'Export stored readings'
complete -c watchpost -n "__fish_watchpost_using_subcommand buffer; and not __fish_seen_subcommand_from status export help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c watchpost -n "__fish_watchpost_using_subcommand buffer; and __fish_seen_subcommand_from status" -s c -l config -d 'Config file (default: $WATCHPOST_CONFIG, else /etc/watchpost/watchpost.toml). Given (or in $WATCHPOST_CONFIG) with no command, runs the daemon; with neither, `watchpost` prints this help' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand buffer; and __fish_seen_subcommand_from status" -l log-format -d 'Log format' -r -f -a "text\t'One human-readable line per event'
json\t'One JSON object per event'"
complete -c watchpost -n "__fish_watchpost_using_subcommand buffer; and __fish_seen_subcommand_from status" -l log-level -d 'Default log filter (RUST_LOG overrides it)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand buffer; and __fish_seen_subcommand_from status" -l json -d 'Print JSON'
complete -c watchpost -n "__fish_watchpost_using_subcommand buffer; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c watchpost -n "__fish_watchpost_using_subcommand buffer; and __fish_seen_subcommand_from export" -l since -d 'Only readings newer than this (e.g. `1h`, `2d`)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand buffer; and __fish_seen_subcommand_from export" -l sensor -d 'Only this sensor' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand buffer; and __fish_seen_subcommand_from export" -l format -d 'Output format' -r -f -a "lp\t'InfluxDB line protocol'
csv\t'CSV: ts,sensor,value,quality'"
complete -c watchpost -n "__fish_watchpost_using_subcommand buffer; and __fish_seen_subcommand_from export" -l precision -d 'Line-protocol timestamp precision (default: `[influxdb] precision`, else ms)' -r -f -a "s\t''
ms\t''
us\t''
ns\t''"
complete -c watchpost -n "__fish_watchpost_using_subcommand buffer; and __fish_seen_subcommand_from export" -s c -l config -d 'Config file (default: $WATCHPOST_CONFIG, else /etc/watchpost/watchpost.toml). Given (or in $WATCHPOST_CONFIG) with no command, runs the daemon; with neither, `watchpost` prints this help' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand buffer; and __fish_seen_subcommand_from export" -l log-format -d 'Log format' -r -f -a "text\t'One human-readable line per event'
json\t'One JSON object per event'"
complete -c watchpost -n "__fish_watchpost_using_subcommand buffer; and __fish_seen_subcommand_from export" -l log-level -d 'Default log filter (RUST_LOG overrides it)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand buffer; and __fish_seen_subcommand_from export" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c watchpost -n "__fish_watchpost_using_subcommand buffer; and __fish_seen_subcommand_from help" -f -a "status" -d 'Size, backlog per sink, oldest undelivered age, drops'
complete -c watchpost -n "__fish_watchpost_using_subcommand buffer; and __fish_seen_subcommand_from help" -f -a "export" -d 'Export stored readings'
complete -c watchpost -n "__fish_watchpost_using_subcommand buffer; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c watchpost -n "__fish_watchpost_using_subcommand alarms; and not __fish_seen_subcommand_from report help" -s c -l config -d 'Config file (default: $WATCHPOST_CONFIG, else /etc/watchpost/watchpost.toml). Given (or in $WATCHPOST_CONFIG) with no command, runs the daemon; with neither, `watchpost` prints this help' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand alarms; and not __fish_seen_subcommand_from report help" -l log-format -d 'Log format' -r -f -a "text\t'One human-readable line per event'
json\t'One JSON object per event'"
complete -c watchpost -n "__fish_watchpost_using_subcommand alarms; and not __fish_seen_subcommand_from report help" -l log-level -d 'Default log filter (RUST_LOG overrides it)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alarms; and not __fish_seen_subcommand_from report help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c watchpost -n "__fish_watchpost_using_subcommand alarms; and not __fish_seen_subcommand_from report help" -f -a "report" -d 'The alarm KPIs of a period: annunciated alarms per 10 minutes and per hour, flood time, bad actors, chattering, standing and stale alarms'
complete -c watchpost -n "__fish_watchpost_using_subcommand alarms; and not __fish_seen_subcommand_from report help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c watchpost -n "__fish_watchpost_using_subcommand alarms; and __fish_seen_subcommand_from report" -l since -d 'The period: from this long ago until now (e.g. `24h`, `7d`, `30d`)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alarms; and __fish_seen_subcommand_from report" -l format -d 'Output format' -r -f -a "table\t'A table for people'
csv\t'`metric,value` lines'
json\t'One JSON document (as published on `{prefix}/{gw}/alarms/kpi`)'"
complete -c watchpost -n "__fish_watchpost_using_subcommand alarms; and __fish_seen_subcommand_from report" -s c -l config -d 'Config file (default: $WATCHPOST_CONFIG, else /etc/watchpost/watchpost.toml). Given (or in $WATCHPOST_CONFIG) with no command, runs the daemon; with neither, `watchpost` prints this help' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand alarms; and __fish_seen_subcommand_from report" -l log-format -d 'Log format' -r -f -a "text\t'One human-readable line per event'
json\t'One JSON object per event'"
complete -c watchpost -n "__fish_watchpost_using_subcommand alarms; and __fish_seen_subcommand_from report" -l log-level -d 'Default log filter (RUST_LOG overrides it)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alarms; and __fish_seen_subcommand_from report" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c watchpost -n "__fish_watchpost_using_subcommand alarms; and __fish_seen_subcommand_from help" -f -a "report" -d 'The alarm KPIs of a period: annunciated alarms per 10 minutes and per hour, flood time, bad actors, chattering, standing and stale alarms'
complete -c watchpost -n "__fish_watchpost_using_subcommand alarms; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and not __fish_seen_subcommand_from ack shelve unshelve out-of-service in-service help" -l broker -d 'Broker URL, e.g. mqtt://127.0.0.1:1883 or mqtts://broker:8883 (default: the config\'s [mqtt] url, else mqtt://127.0.0.1:1883)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and not __fish_seen_subcommand_from ack shelve unshelve out-of-service in-service help" -l gateway -d 'Only this gateway (default: the config\'s gateway id, else all; commands need it)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and not __fish_seen_subcommand_from ack shelve unshelve out-of-service in-service help" -l prefix -d 'Topic prefix (default: the config\'s, else watchpost)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and not __fish_seen_subcommand_from ack shelve unshelve out-of-service in-service help" -l ca-file -d 'CA certificate (PEM) for mqtts://' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and not __fish_seen_subcommand_from ack shelve unshelve out-of-service in-service help" -l cert-file -d 'Client certificate (PEM)' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and not __fish_seen_subcommand_from ack shelve unshelve out-of-service in-service help" -l key-file -d 'Client key (PEM)' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and not __fish_seen_subcommand_from ack shelve unshelve out-of-service in-service help" -l username -d 'Username' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and not __fish_seen_subcommand_from ack shelve unshelve out-of-service in-service help" -l password-file -d 'File holding the password (or set WATCHPOST_MQTT_PASSWORD; never on the command line, where `ps` shows it)' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and not __fish_seen_subcommand_from ack shelve unshelve out-of-service in-service help" -l count -d 'Exit after this many live events' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and not __fish_seen_subcommand_from ack shelve unshelve out-of-service in-service help" -s c -l config -d 'Config file (default: $WATCHPOST_CONFIG, else /etc/watchpost/watchpost.toml). Given (or in $WATCHPOST_CONFIG) with no command, runs the daemon; with neither, `watchpost` prints this help' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and not __fish_seen_subcommand_from ack shelve unshelve out-of-service in-service help" -l log-format -d 'Log format' -r -f -a "text\t'One human-readable line per event'
json\t'One JSON object per event'"
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and not __fish_seen_subcommand_from ack shelve unshelve out-of-service in-service help" -l log-level -d 'Default log filter (RUST_LOG overrides it)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and not __fish_seen_subcommand_from ack shelve unshelve out-of-service in-service help" -l no-color -d 'No colours'
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and not __fish_seen_subcommand_from ack shelve unshelve out-of-service in-service help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and not __fish_seen_subcommand_from ack shelve unshelve out-of-service in-service help" -f -a "ack" -d 'Acknowledge an alarm (active, or returned to normal and unacknowledged)'
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and not __fish_seen_subcommand_from ack shelve unshelve out-of-service in-service help" -f -a "shelve" -d 'Shelve an alarm or every alarm of a sensor for a while (not annunciated; announced again if still active)'
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and not __fish_seen_subcommand_from ack shelve unshelve out-of-service in-service help" -f -a "unshelve" -d 'Lift a shelf'
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and not __fish_seen_subcommand_from ack shelve unshelve out-of-service in-service help" -f -a "out-of-service" -d 'Take a sensor out of service (its alarms clear and are not evaluated until it is back)'
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and not __fish_seen_subcommand_from ack shelve unshelve out-of-service in-service help" -f -a "in-service" -d 'Return a sensor to service'
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and not __fish_seen_subcommand_from ack shelve unshelve out-of-service in-service help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from ack" -l by -d 'Who acknowledges' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from ack" -l note -d 'Why' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from ack" -l broker -d 'Broker URL, e.g. mqtt://127.0.0.1:1883 or mqtts://broker:8883 (default: the config\'s [mqtt] url, else mqtt://127.0.0.1:1883)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from ack" -l gateway -d 'Only this gateway (default: the config\'s gateway id, else all; commands need it)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from ack" -l prefix -d 'Topic prefix (default: the config\'s, else watchpost)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from ack" -l ca-file -d 'CA certificate (PEM) for mqtts://' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from ack" -l cert-file -d 'Client certificate (PEM)' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from ack" -l key-file -d 'Client key (PEM)' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from ack" -l username -d 'Username' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from ack" -l password-file -d 'File holding the password (or set WATCHPOST_MQTT_PASSWORD; never on the command line, where `ps` shows it)' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from ack" -s c -l config -d 'Config file (default: $WATCHPOST_CONFIG, else /etc/watchpost/watchpost.toml). Given (or in $WATCHPOST_CONFIG) with no command, runs the daemon; with neither, `watchpost` prints this help' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from ack" -l log-format -d 'Log format' -r -f -a "text\t'One human-readable line per event'
json\t'One JSON object per event'"
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from ack" -l log-level -d 'Default log filter (RUST_LOG overrides it)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from ack" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from shelve" -l sensor -d 'Every alarm of this sensor' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from shelve" -l duration -d 'How long, e.g. 30m, 2h (at most the gateway\'s mqtt.commands.max_shelve)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from shelve" -l by -d 'Who shelves' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from shelve" -l note -d 'Why' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from shelve" -l broker -d 'Broker URL, e.g. mqtt://127.0.0.1:1883 or mqtts://broker:8883 (default: the config\'s [mqtt] url, else mqtt://127.0.0.1:1883)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from shelve" -l gateway -d 'Only this gateway (default: the config\'s gateway id, else all; commands need it)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from shelve" -l prefix -d 'Topic prefix (default: the config\'s, else watchpost)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from shelve" -l ca-file -d 'CA certificate (PEM) for mqtts://' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from shelve" -l cert-file -d 'Client certificate (PEM)' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from shelve" -l key-file -d 'Client key (PEM)' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from shelve" -l username -d 'Username' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from shelve" -l password-file -d 'File holding the password (or set WATCHPOST_MQTT_PASSWORD; never on the command line, where `ps` shows it)' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from shelve" -s c -l config -d 'Config file (default: $WATCHPOST_CONFIG, else /etc/watchpost/watchpost.toml). Given (or in $WATCHPOST_CONFIG) with no command, runs the daemon; with neither, `watchpost` prints this help' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from shelve" -l log-format -d 'Log format' -r -f -a "text\t'One human-readable line per event'
json\t'One JSON object per event'"
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from shelve" -l log-level -d 'Default log filter (RUST_LOG overrides it)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from shelve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from unshelve" -l sensor -d 'Every alarm of this sensor' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from unshelve" -l by -d 'Who' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from unshelve" -l broker -d 'Broker URL, e.g. mqtt://127.0.0.1:1883 or mqtts://broker:8883 (default: the config\'s [mqtt] url, else mqtt://127.0.0.1:1883)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from unshelve" -l gateway -d 'Only this gateway (default: the config\'s gateway id, else all; commands need it)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from unshelve" -l prefix -d 'Topic prefix (default: the config\'s, else watchpost)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from unshelve" -l ca-file -d 'CA certificate (PEM) for mqtts://' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from unshelve" -l cert-file -d 'Client certificate (PEM)' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from unshelve" -l key-file -d 'Client key (PEM)' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from unshelve" -l username -d 'Username' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from unshelve" -l password-file -d 'File holding the password (or set WATCHPOST_MQTT_PASSWORD; never on the command line, where `ps` shows it)' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from unshelve" -s c -l config -d 'Config file (default: $WATCHPOST_CONFIG, else /etc/watchpost/watchpost.toml). Given (or in $WATCHPOST_CONFIG) with no command, runs the daemon; with neither, `watchpost` prints this help' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from unshelve" -l log-format -d 'Log format' -r -f -a "text\t'One human-readable line per event'
json\t'One JSON object per event'"
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from unshelve" -l log-level -d 'Default log filter (RUST_LOG overrides it)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from unshelve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from out-of-service" -l by -d 'Who' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from out-of-service" -l note -d 'Why' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from out-of-service" -l broker -d 'Broker URL, e.g. mqtt://127.0.0.1:1883 or mqtts://broker:8883 (default: the config\'s [mqtt] url, else mqtt://127.0.0.1:1883)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from out-of-service" -l gateway -d 'Only this gateway (default: the config\'s gateway id, else all; commands need it)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from out-of-service" -l prefix -d 'Topic prefix (default: the config\'s, else watchpost)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from out-of-service" -l ca-file -d 'CA certificate (PEM) for mqtts://' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from out-of-service" -l cert-file -d 'Client certificate (PEM)' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from out-of-service" -l key-file -d 'Client key (PEM)' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from out-of-service" -l username -d 'Username' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from out-of-service" -l password-file -d 'File holding the password (or set WATCHPOST_MQTT_PASSWORD; never on the command line, where `ps` shows it)' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from out-of-service" -s c -l config -d 'Config file (default: $WATCHPOST_CONFIG, else /etc/watchpost/watchpost.toml). Given (or in $WATCHPOST_CONFIG) with no command, runs the daemon; with neither, `watchpost` prints this help' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from out-of-service" -l log-format -d 'Log format' -r -f -a "text\t'One human-readable line per event'
json\t'One JSON object per event'"
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from out-of-service" -l log-level -d 'Default log filter (RUST_LOG overrides it)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from out-of-service" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from in-service" -l by -d 'Who' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from in-service" -l broker -d 'Broker URL, e.g. mqtt://127.0.0.1:1883 or mqtts://broker:8883 (default: the config\'s [mqtt] url, else mqtt://127.0.0.1:1883)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from in-service" -l gateway -d 'Only this gateway (default: the config\'s gateway id, else all; commands need it)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from in-service" -l prefix -d 'Topic prefix (default: the config\'s, else watchpost)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from in-service" -l ca-file -d 'CA certificate (PEM) for mqtts://' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from in-service" -l cert-file -d 'Client certificate (PEM)' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from in-service" -l key-file -d 'Client key (PEM)' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from in-service" -l username -d 'Username' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from in-service" -l password-file -d 'File holding the password (or set WATCHPOST_MQTT_PASSWORD; never on the command line, where `ps` shows it)' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from in-service" -s c -l config -d 'Config file (default: $WATCHPOST_CONFIG, else /etc/watchpost/watchpost.toml). Given (or in $WATCHPOST_CONFIG) with no command, runs the daemon; with neither, `watchpost` prints this help' -r -F
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from in-service" -l log-format -d 'Log format' -r -f -a "text\t'One human-readable line per event'
json\t'One JSON object per event'"
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from in-service" -l log-level -d 'Default log filter (RUST_LOG overrides it)' -r
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from in-service" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from help" -f -a "ack" -d 'Acknowledge an alarm (active, or returned to normal and unacknowledged)'
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from help" -f -a "shelve" -d 'Shelve an alarm or every alarm of a sensor for a while (not annunciated; announced again if still active)'
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from help" -f -a "unshelve" -d 'Lift a shelf'
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from help" -f -a "out-of-service" -d 'Take a sensor out of service (its alarms clear and are not evaluated until it is back)'
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from help" -f -a "in-service" -d 'Return a sensor to service'
complete -c watchpost -n "__fish_watchpost_using_subcommand alerts; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c watchpost -n "__fish_watchpost_using_subcommand help; and not __fish_seen_subcommand_from run check-config schema config read scan buffer alarms alerts help" -f -a "run" -d 'Run the daemon'
complete -c watchpost -n "__fish_watchpost_using_subcommand help; and not __fish_seen_subcommand_from run check-config schema config read scan buffer alarms alerts help" -f -a "check-config" -d 'Validate a config file: print `ok`, or every problem with file:line:column and key path'
complete -c watchpost -n "__fish_watchpost_using_subcommand help; and not __fish_seen_subcommand_from run check-config schema config read scan buffer alarms alerts help" -f -a "schema" -d 'Print the config file\'s JSON Schema (for editors: Taplo / Even Better TOML; see the README)'
complete -c watchpost -n "__fish_watchpost_using_subcommand help; and not __fish_seen_subcommand_from run check-config schema config read scan buffer alarms alerts help" -f -a "config" -d 'Remote settings: `config reset-remote` removes overrides set through the device shadow'
complete -c watchpost -n "__fish_watchpost_using_subcommand help; and not __fish_seen_subcommand_from run check-config schema config read scan buffer alarms alerts help" -f -a "read" -d 'Read sensors once and print decoded values with the raw registers or bytes — for commissioning'
complete -c watchpost -n "__fish_watchpost_using_subcommand help; and not __fish_seen_subcommand_from run check-config schema config read scan buffer alarms alerts help" -f -a "scan" -d 'Find devices on a bus'
complete -c watchpost -n "__fish_watchpost_using_subcommand help; and not __fish_seen_subcommand_from run check-config schema config read scan buffer alarms alerts help" -f -a "buffer" -d 'Inspect the local buffer'
complete -c watchpost -n "__fish_watchpost_using_subcommand help; and not __fish_seen_subcommand_from run check-config schema config read scan buffer alarms alerts help" -f -a "alarms" -d 'Alarm-system performance: `alarms report` prints the alarm KPIs of a period from the local store'
complete -c watchpost -n "__fish_watchpost_using_subcommand help; and not __fish_seen_subcommand_from run check-config schema config read scan buffer alarms alerts help" -f -a "alerts" -d 'Watch a gateway\'s alerts on the broker (the standing ones first, then live), or acknowledge, shelve and take sensors out of service (`[mqtt.commands]` on the gateway)'
complete -c watchpost -n "__fish_watchpost_using_subcommand help; and not __fish_seen_subcommand_from run check-config schema config read scan buffer alarms alerts help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c watchpost -n "__fish_watchpost_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "reset-remote" -d 'Remove remote alarm settings (all, or one sensor\'s, or one key); then reload the daemon (`systemctl reload watchpost`). Clear the shadow\'s `desired` too, or it sets them again'
complete -c watchpost -n "__fish_watchpost_using_subcommand help; and __fish_seen_subcommand_from scan" -f -a "i2c" -d 'Which addresses answer on an I2C bus (probed like i2cdetect), with the likely chip'
complete -c watchpost -n "__fish_watchpost_using_subcommand help; and __fish_seen_subcommand_from scan" -f -a "modbus" -d 'Which Modbus units answer, with the registers shown in every decoding'
complete -c watchpost -n "__fish_watchpost_using_subcommand help; and __fish_seen_subcommand_from buffer" -f -a "status" -d 'Size, backlog per sink, oldest undelivered age, drops'
complete -c watchpost -n "__fish_watchpost_using_subcommand help; and __fish_seen_subcommand_from buffer" -f -a "export" -d 'Export stored readings'
complete -c watchpost -n "__fish_watchpost_using_subcommand help; and __fish_seen_subcommand_from alarms" -f -a "report" -d 'The alarm KPIs of a period: annunciated alarms per 10 minutes and per hour, flood time, bad actors, chattering, standing and stale alarms'
complete -c watchpost -n "__fish_watchpost_using_subcommand help; and __fish_seen_subcommand_from alerts" -f -a "ack" -d 'Acknowledge an alarm (active, or returned to normal and unacknowledged)'
complete -c watchpost -n "__fish_watchpost_using_subcommand help; and __fish_seen_subcommand_from alerts" -f -a "shelve" -d 'Shelve an alarm or every alarm of a sensor for a while (not annunciated; announced again if still active)'
complete -c watchpost -n "__fish_watchpost_using_subcommand help; and __fish_seen_subcommand_from alerts" -f -a "unshelve" -d 'Lift a shelf'
complete -c watchpost -n "__fish_watchpost_using_subcommand help; and __fish_seen_subcommand_from alerts" -f -a "out-of-service" -d 'Take a sensor out of service (its alarms clear and are not evaluated until it is back)'
complete -c watchpost -n "__fish_watchpost_using_subcommand help; and __fish_seen_subcommand_from alerts" -f -a "in-service" -d 'Return a sensor to service'
