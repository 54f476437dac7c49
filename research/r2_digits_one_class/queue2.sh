. ./env.sh
run(){ taskset -c 0 $PY train.py "$1" "$2" test 2>&1 | grep "^\[" ; }
run T_hkrchain_k64 '{"method":"hkr_chain","steps":600,"k":64,"margin":0.5,"save_model":true}'
run T_ml_k64 '{"method":"ml","steps":600,"k":64,"save_model":true}'
run T_hkr_m05 '{"method":"hkr","steps":600,"margin":0.5}'
