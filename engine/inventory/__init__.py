"""Hosts: which there are, how to reach them, and their vars.

host.py       the Host record the rest of the engine sees
loader.py     load_inventory(): a file → Inventory (groups, var precedence)
model.py      what every format is parsed into, and the host-field rules
native.py     the native YAML format
ansible.py    Ansible's YAML and INI formats
patterns.py   Ansible-style host patterns (web:&prod:!web3, db[0:2])
sshconfig.py  ~/.ssh/config applied to what the inventory left unset
"""
