# The shell `other` opens on the lab's other computer (tests/tools/lab/bin/other).
PS1='(lab) other$ '
PS2='> '
