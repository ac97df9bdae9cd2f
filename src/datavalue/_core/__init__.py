"""The bottom layer: errors, input checks, atomic files and run folders, parallel work,
checkpoints and the result type. Imports nothing else of datavalue."""
