"""Hosts: which there are, how to reach them, and their vars.

host.py       the Host record the rest of the engine sees
loader.py     load_inventory(): sources → Inventory (groups, var precedence)
sources.py    files, directories, scripts and several -i, merged into one Spec
model.py      what every format is parsed into, and the host-field rules
native.py     the native YAML format
ansible.py    Ansible's YAML and INI formats
ansible_ssh.py     ansible_* connection vars and ansible_ssh_*_args as host fields
ansible_vars.py    group_vars/ and host_vars/ beside an inventory
ansible_script.py  dynamic inventory scripts and `ansible-inventory --list` JSON
patterns.py   Ansible-style host patterns (web:&prod:!web3, db[0:2])
sshconfig.py  ~/.ssh/config applied to what the inventory left unset
"""
