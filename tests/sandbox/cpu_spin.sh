#!/bin/sh
# Hostile agent: burn CPU forever.
echo START
while :; do :; done
