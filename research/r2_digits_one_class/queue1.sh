. ./env.sh
C='[1,3,8,9]'
run(){ taskset -c 0 $PY train.py "$1" "$2" val "$C" 2>&1 | grep "^\[" ; }
run hkr_m05 '{"method":"hkr","steps":600,"margin":0.5}'
run dist '{"method":"dist","steps":600}'
run ml_k64 '{"method":"ml","steps":600,"k":64}'
run hkr_m1 '{"method":"hkr","steps":600,"margin":1.0}'
run hkrchain_k64 '{"method":"hkr_chain","steps":600,"k":64,"margin":0.5}'
run is_k64 '{"method":"is","steps":600,"k":64}'
run hkr_conv_m05 '{"method":"hkr","steps":600,"margin":0.5,"net":"conv"}'
