#!/usr/bin/env bash
# One example picture of each `dlrun viz` command, written next to this script.
# Trains the small runs it needs in a temporary folder (about 3 minutes on 2 CPU cores), then draws.
# Usage, from the repository root:  bash experiments/figures/viz/make.sh
set -euo pipefail

DLRUN=${DLRUN:-.venv/bin/dlrun}
OUT=$(cd "$(dirname "$0")" && pwd)
RUNS=$(mktemp -d)
trap 'rm -rf "$RUNS"' EXIT

train() {  # train NAME OVERRIDES...: quiet run under $RUNS/NAME/<time>
  local name=$1
  shift
  "$DLRUN" train runs_dir="$RUNS" name="$name" trainer.progress=none trainer.hist_every=0 "$@" >/dev/null
  ls -d "$RUNS/$name"/*/ | tail -1
}

UNIT=data.standardize=unit  # digits pixels 0..16 scaled to 0..1

LENET=$(train lenet5 model=lenet5 $UNIT trainer.epochs=30)
LINEAR=$(train logistic model=linear $UNIT trainer.epochs=30)
XOR=$(train xor_hidden experiment=xor_hidden)
RESNET=$(train resnet20 model=resnet20 $UNIT trainer.epochs=10)
PLAIN=$(train plain20 model=plain20 $UNIT trainer.epochs=10)
SIGMOID=$(train sigmoid6 'model.hidden=[64,64,64,64,64,64]' model.activation=sigmoid $UNIT trainer.epochs=1)
LR1=$(train lr-1e-4 'model.hidden=[64]' $UNIT optim.lr=1e-4 trainer.epochs=15)
LR2=$(train lr-1e-3 'model.hidden=[64]' $UNIT optim.lr=1e-3 trainer.epochs=15)
LR3=$(train lr-1e-1 'model.hidden=[64]' $UNIT optim.lr=1e-1 trainer.epochs=15)

"$DLRUN" viz actmax "$LENET" --blur 0.5 --out "$OUT/actmax.png"
"$DLRUN" viz filters "$LENET" --out "$OUT/filters.png"
"$DLRUN" viz saliency "$LENET" --out "$OUT/saliency.png"
"$DLRUN" viz adversarial "$LINEAR" --attack pgd --eps 0.25 --out "$OUT/adversarial.png"
"$DLRUN" viz adversarial "$LENET" --attack onepixel --out "$OUT/adversarial-onepixel.png"
"$DLRUN" viz landscape "$RESNET" --compare "$PLAIN" --points 21 --examples 512 --out "$OUT/landscape.png"
"$DLRUN" viz boundary "$XOR" --out "$OUT/boundary.png"
"$DLRUN" viz curves "$LR1" "$LR2" "$LR3" --out "$OUT/curves.png"
"$DLRUN" viz confusion "$LENET" --out "$OUT/confusion.png"
"$DLRUN" viz activations "$SIGMOID" --weights init --out "$OUT/activations.png"
rm -f "$OUT/landscape.npz"  # the grid values; the picture is what the README shows
ls -l "$OUT"/*.png
