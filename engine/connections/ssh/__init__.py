"""The `ssh` connection (paramiko), one transport per host.

    connection.py    SSHConnection: connect, run, put/get, tunnel, interrupt
    session.py       a persistent /bin/sh per host, each step in its own subshell
    exec_channel.py  an exec channel per step (stdin, pty, non-POSIX shells)
    transfer.py      SFTP streams and direct-tcpip tunnels
    hostkeys.py      known_hosts policies: strict, accept-new, ignore
    jump.py          jump hosts: an inventory host or user@addr:port
    transport.py     the transport factory and parsed private keys

paramiko is imported inside these modules' functions or by modules that are
themselves imported lazily, so `runbook --help` never loads it.
"""
